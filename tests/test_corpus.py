"Token corpora on disk: tokenizing into a memmap, reuse, refusal, crash safety, streaming LM batches and a tiny fit."
import gzip, json, os
from pathlib import Path
import numpy as np, pytest, torch
from fastai.text.data import LMDataLoader, LMTensorText, TensorText
import multifit_fastai.corpus as corpus_mod
from multifit_fastai.corpus import (tokenize_corpus, TokenCorpus, MemmapLMDataLoader, CorpusDocs, corpus_dataloaders,
                                    META, IDS, OFFSETS)
from multifit_fastai.core import read_lines
from multifit_fastai.data import sample_data
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.package import load_package
from multifit_fastai.learner import multifit_lm_learner, get_tokenizer, save_pretrained

N_GZ = 800

@pytest.fixture(scope='module')
def tok():
    return SPTokenizer.train(list(read_lines(sample_data().corpus_path, max_lines=1500)), lang='de', vocab_sz=600)

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('src')
    gz = d/'corpus.txt.gz'
    gz.write_bytes(gzip.compress('\n'.join(read_lines(sample_data().corpus_path, max_lines=N_GZ)).encode()))
    txt = d/'extra.txt'
    txt.write_text('Ein kleiner Text über Bücher.\n\n   \nNOCH ein Absatz, hier!\nDrei.\n', encoding='utf-8')
    return [gz, txt]

@pytest.fixture(scope='module')
def corpus(tok, files, tmp_path_factory):
    return tokenize_corpus(files, tok, tmp_path_factory.mktemp('c')/'corpus', n_workers=1, chunk_lines=100)

def _docs(c): return [c[i] for i in range(c.n_docs)]

def test_documents_equal_encode_batch(tok, files, corpus):
    lines = list(read_lines(files))
    enc = tok.encode_batch(lines)
    assert corpus.n_docs == len(lines) == N_GZ + 3
    assert corpus.n_tokens == int(enc.lens.sum())
    assert [d.tolist() for d in _docs(corpus)] == [enc[i].tolist() for i in range(len(enc))]
    assert all(d[0] == 2 for d in _docs(corpus))  # xxbos first
    assert corpus.meta['dtype'] == 'uint16' and corpus.ids.dtype == np.uint16
    assert isinstance(corpus.ids, np.memmap) and not corpus.ids.flags.writeable
    assert corpus.fingerprint == tok.fingerprint
    assert [s['path'] for s in corpus.meta['sources']] == [str(f.resolve()) for f in files]
    assert sorted(os.listdir(corpus.path)) == sorted([META, IDS, OFFSETS])

def test_workers_give_identical_files(tok, files, corpus, tmp_path):
    c2 = tokenize_corpus(files, tok, tmp_path/'c2', n_workers=2, chunk_lines=37)
    for name in (IDS, OFFSETS): assert (corpus.path/name).read_bytes() == (c2.path/name).read_bytes()
    m1, m2 = (json.loads((p/META).read_text()) for p in (corpus.path, c2.path))
    m1.pop('created'); m2.pop('created')
    assert m1 == m2

def test_uint32_for_big_vocab(tok, files, tmp_path, monkeypatch):
    monkeypatch.setattr(SPTokenizer, '__len__', lambda self: 70_000)
    c = tokenize_corpus(files[1], tok, tmp_path/'c32', n_workers=1)
    assert c.meta['dtype'] == 'uint32' and c.ids.dtype == np.uint32
    monkeypatch.undo()
    assert [d.tolist() for d in _docs(c)] == [t.tolist() for t in tok.encode_batch(list(read_lines(files[1])))]

def test_reuse_without_retokenizing(tok, files, tmp_path, monkeypatch):
    c = tokenize_corpus(files, tok, tmp_path/'c', n_workers=1)
    mt = (c.path/IDS).stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(corpus_mod, '_encoded_chunks', lambda *a, **k: calls.append(1) or iter([]))
    c2 = tokenize_corpus(files, tok, tmp_path/'c', n_workers=1)
    assert calls == [] and (c2.path/IDS).stat().st_mtime_ns == mt and c2.n_tokens == c.n_tokens
    monkeypatch.undo()
    # a new mtime over the same bytes (a copied or re-provisioned data folder) is reused without re-tokenizing
    os.utime(files[1], ns=(files[1].stat().st_atime_ns, files[1].stat().st_mtime_ns + 10**9))
    monkeypatch.setattr(corpus_mod, '_encoded_chunks', lambda *a, **k: calls.append(1) or iter([]))
    assert tokenize_corpus(files, tok, tmp_path/'c').n_tokens == c.n_tokens and calls == []
    monkeypatch.undo()
    assert (c.path/IDS).stat().st_mtime_ns == mt

def test_changed_source_refused(tok, files, tmp_path):
    src = [tmp_path/'a.txt', tmp_path/'b.txt']
    for s, f in zip(src, files): s.write_bytes(f.read_bytes())
    c = tokenize_corpus(src, tok, tmp_path/'c', n_workers=1)
    assert all(len(s['sha256']) == 64 for s in c.meta['sources'])
    b = src[1].read_bytes(); src[1].write_bytes(b.replace('Drei'.encode(), 'Vier'.encode()))  # same size, other bytes
    assert src[1].stat().st_size == len(b)
    with pytest.raises(FileExistsError, match='other'): tokenize_corpus(src, tok, tmp_path/'c')
    src[1].write_bytes(b + b'Mehr.\n')
    with pytest.raises(FileExistsError, match='other'): tokenize_corpus(src, tok, tmp_path/'c')
    c3 = tokenize_corpus(src, tok, tmp_path/'c', overwrite=True, n_workers=1)
    assert c3.n_docs == c.n_docs + 1

def test_other_tokenizer_refused(tok, files, corpus):
    tok2 = SPTokenizer.train(list(read_lines(files[0], max_lines=500)), lang='de', vocab_sz=300)
    with pytest.raises(ValueError, match='tokenizer changed') as e: TokenCorpus.open(corpus.path, tok2)
    assert tok.fingerprint in str(e.value) and tok2.fingerprint in str(e.value)
    with pytest.raises(FileExistsError, match='another tokenizer'): tokenize_corpus(files, tok2, corpus.path)
    assert TokenCorpus.open(corpus.path, tok).n_docs == corpus.n_docs
    assert TokenCorpus.open(corpus.path).n_docs == corpus.n_docs  # without a tokenizer: no check

@pytest.mark.parametrize('n_workers', [1, 2])
def test_crash_leaves_nothing_complete(tok, files, tmp_path, monkeypatch, n_workers):
    real = corpus_mod._encoded_chunks
    def boom(*a, **k):
        for i, c in enumerate(real(*a, **k)):
            if i == 2: raise RuntimeError('simulated crash')
            yield c
    monkeypatch.setattr(corpus_mod, '_encoded_chunks', boom)
    with pytest.raises(RuntimeError, match='simulated'):
        tokenize_corpus(files, tok, tmp_path/'new', n_workers=n_workers, chunk_lines=100)
    assert os.listdir(tmp_path/'new') == []
    with pytest.raises(FileNotFoundError, match='no complete token corpus'): TokenCorpus.open(tmp_path/'new')
    # overwriting an existing corpus and crashing: the old metadata is gone, no temp files are left
    monkeypatch.undo()
    tokenize_corpus(files[1], tok, tmp_path/'old', n_workers=1)
    monkeypatch.setattr(corpus_mod, 'atomic_write_json', lambda *a, **k: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError, match='disk full'): tokenize_corpus(files, tok, tmp_path/'old', overwrite=True)
    assert META not in os.listdir(tmp_path/'old') and not [f for f in os.listdir(tmp_path/'old') if f.endswith('.tmp')]
    with pytest.raises(FileNotFoundError): TokenCorpus.open(tmp_path/'old')

def test_damaged_corpus_refused(tok, files, tmp_path):
    c = tokenize_corpus(files[1], tok, tmp_path/'c', n_workers=1)
    with open(c.path/IDS, 'ab') as f: f.write(b'\0\0')
    with pytest.raises(ValueError, match='damaged'): TokenCorpus.open(c.path)

@pytest.mark.parametrize('bs,seq_len', [(4, 20), (7, 33), (16, 70)])
def test_same_batches_as_fastai(corpus, bs, seq_len):
    docs = _docs(corpus)
    ref = LMDataLoader(docs, lens=[len(d) for d in docs], bs=bs, seq_len=seq_len)
    dl = MemmapLMDataLoader(corpus, bs=bs, seq_len=seq_len)
    assert len(dl) == len(ref) and dl.n == ref.n and dl.bl == ref.bl
    n = 0
    for (x, y), (rx, ry) in zip(dl, ref):
        assert isinstance(x, LMTensorText) and isinstance(y, TensorText)
        assert torch.equal(x, rx) and torch.equal(y, ry); n += 1
    assert n == len(ref)
    assert torch.equal(dl.new().one_batch()[0], ref.one_batch()[0])

def test_doc_range_matches_fastai(corpus):
    docs = _docs(corpus)[100:300]
    ref = LMDataLoader(docs, lens=[len(d) for d in docs], bs=8, seq_len=25)
    dl = MemmapLMDataLoader(corpus, bs=8, seq_len=25, doc_range=(100, 300))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(dl, ref))
    with pytest.raises(ValueError, match='doc_range'): MemmapLMDataLoader(corpus, doc_range=(5, 5))

def test_shuffle_permutes_documents_per_epoch(corpus):
    docs = _docs(corpus)
    dl = MemmapLMDataLoader(corpus, bs=8, seq_len=30, shuffle=True, seed=3)
    orders, firsts = [], []
    for _ in range(3):
        bs = list(dl)
        assert len(bs) == len(dl)
        orders.append(dl.order.copy()); firsts.append(bs[0][0])
        assert sorted(dl.order.tolist()) == list(range(corpus.n_docs))
        stream = dl.read(0, corpus.n_tokens)  # the whole epoch stream: the documents in the permuted order
        assert torch.equal(torch.from_numpy(stream), torch.cat([docs[i] for i in dl.order]))
        assert np.bincount(stream, minlength=600).tolist() == np.bincount(corpus.ids, minlength=600).tolist()
        # batches are the rows of that stream
        x, y = bs[1]
        assert x[2].tolist() == stream[2*dl.bl + 30:2*dl.bl + 60].tolist()
        assert y[2].tolist() == stream[2*dl.bl + 31:2*dl.bl + 61].tolist()
    assert orders[0].tolist() != orders[1].tolist() != orders[2].tolist()
    assert not torch.equal(firsts[0], firsts[1])
    # reproducible: same seed, same epochs
    dl2 = MemmapLMDataLoader(corpus, bs=8, seq_len=30, shuffle=True, seed=3)
    list(dl2); assert dl2.order.tolist() == orders[0].tolist()
    assert dl.epoch_order(2).tolist() == orders[2].tolist()

def test_corpus_dataloaders_fit(tok, corpus, tmp_path):
    dls = corpus_dataloaders(corpus, valid_docs=60, bs=8, seq_len=24, seed=0)
    assert dls.vocab == tok.vocab and get_tokenizer(dls) is tok
    assert dls.train.dataset.stop == dls.valid.dataset.start == corpus.n_docs - 60
    assert dls.train.shuffle and not dls.valid.shuffle
    with pytest.raises(ValueError, match='validation documents'): corpus_dataloaders(corpus, valid_docs=0)
    with pytest.raises(ValueError, match='tokenizer'): corpus_dataloaders(TokenCorpus.open(corpus.path))
    torch.manual_seed(0)
    learn = multifit_lm_learner(dls, emb_sz=16, n_hid=24, n_layers=2, seed=0)
    assert learn.tokenizer is tok
    with learn.no_bar(), learn.no_logging():
        before = learn.validate()[0]
        learn.fit(1, 1e-2)
        losses = [float(l) for l in learn.recorder.losses]
        after = learn.validate()[0]
    assert len(losses) == len(dls.train)
    assert after < before, (before, after)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    # as with fastai's LMDataLoader, LM predictions cannot be reordered (concatenated on the time axis)
    with learn.no_bar(): preds, targs = learn.get_preds(reorder=False)
    assert preds.shape[:2] == targs.shape and targs.shape[0] == 8
    save_pretrained(learn, tmp_path/'lm')
    assert load_package(tmp_path/'lm').tokenizer.fingerprint == corpus.fingerprint
