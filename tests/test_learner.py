"Learners, presets and model packages: real training on DDTP German, save/load, and bad packages."
import json, os, pickle, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from conftest import ddtp_path
from multifit_fastai.presets import multifit_preset, MultiFiTPreset
from multifit_fastai.package import load_package, PackageError, _encoder_of
from multifit_fastai.learner import multifit_lm_learner, multifit_classifier_learner, text_dataloaders, save_pretrained, from_pretrained
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.core import read_lines
from multifit_fastai.data import sample_data

SMALL = dict(emb_sz=64, n_hid=128, n_layers=2, bs=32, bptt=48, seed=0)
TINY = dict(emb_sz=16, n_hid=24, n_layers=2, bs=16, bptt=24, seed=0)

@pytest.fixture(scope='module')
def de(shared_data):
    tr, va = pd.read_csv(ddtp_path('de')), pd.read_csv(ddtp_path('de', 'valid'))
    corpus = list(read_lines(shared_data/'corpora'/'de.txt.gz', max_lines=6000))
    tok = SPTokenizer.train(corpus + list(tr.text), lang='de', vocab_sz=2000)
    return tok, tr, va, corpus

@pytest.mark.slow
def test_lm_finetune_then_classifier_real_data(de, tmp_path):
    tok, tr, va, corpus = de
    lm_dls = text_dataloaders(tok, pd.DataFrame({'text': corpus[:4000] + list(tr.text)}), va[['text']], bs=32, seq_len=48)
    lm = multifit_lm_learner(lm_dls, 'finetune_lm', **SMALL)
    with lm.no_bar(), lm.no_logging(): ppl_before = lm.validate()[2]
    with lm.no_bar(), lm.no_logging(): lm.fit_one_cycle(2, 1e-2)
    with lm.no_bar(), lm.no_logging(): ppl_after = lm.validate()[2]
    print(f'LM validation perplexity: {ppl_before:.1f} -> {ppl_after:.1f}')
    assert ppl_after < 0.2 * ppl_before, (ppl_before, ppl_after)
    save_pretrained(lm, tmp_path/'lm')

    dls = text_dataloaders(tok, tr, va, label_col='label', bs=32, seq_len=48)
    clas = multifit_classifier_learner(dls, **SMALL)
    with clas.no_bar(), clas.no_logging(): clas.fit_one_cycle(4, 1e-2)
    acc = clas.validate()[1]
    print(f'classifier accuracy (8 classes, chance 0.125): {acc:.3f}')
    assert acc > 0.3, acc

    # save -> move -> load gives identical predictions
    save_pretrained(clas, tmp_path/'a'/'clas')
    shutil.move(str(tmp_path/'a'), str(tmp_path/'b'))
    pkg = load_package(tmp_path/'b'/'clas')
    assert pkg.labels == list(dls.vocab[1])
    texts = list(va.text[:64])
    got = pkg.predict(texts)
    clas.model.eval()
    probs, _ = clas.get_preds(dl=dls.test_dl(pd.DataFrame({'text': texts})))
    # the package gives each text what the classifier gives it alone (fastai's batched padding can change a short
    # text's pooled features when the batch's longest text is not a whole number of bptt chunks)
    with torch.no_grad():
        alone = []
        for t in texts:
            clas.model.reset(); alone.append(torch.softmax(clas.model(pkg.tokenizer(t)[None])[0].float(), -1)[0])
    alone = torch.stack(alone)
    np.testing.assert_allclose(got[pkg.labels].values, alone.numpy(), atol=1e-5)
    assert list(got.label) == [pkg.labels[i] for i in alone.argmax(1).tolist()]
    assert (alone.argmax(1) == probs.argmax(1)).float().mean() > 0.8  # and mostly what fastai's batches give
    # the package's learner on new data predicts the same
    clas2 = from_pretrained(tmp_path/'b'/'clas', dls)
    probs2, _ = clas2.get_preds(dl=dls.test_dl(pd.DataFrame({'text': texts})))
    np.testing.assert_allclose(probs2.numpy(), probs.numpy(), atol=1e-5)

# ---- quick tests on the embedded sample ----

@pytest.fixture(scope='module')
def sample():
    sd = sample_data()
    tok = SPTokenizer.train(sd.corpus(1500), lang='de', vocab_sz=600)
    dls = text_dataloaders(tok, sd.train[:200], sd.valid[:60], label_col='label', bs=16, seq_len=24)
    lm_dls = text_dataloaders(tok, sd.train[:200], sd.valid[:60], bs=16, seq_len=24)
    return sd, tok, dls, lm_dls

@pytest.fixture(scope='module')
def packages(sample, tmp_path_factory):
    sd, tok, dls, lm_dls = sample
    d = tmp_path_factory.mktemp('pkgs')
    lm = multifit_lm_learner(lm_dls, 'pretrain', **TINY)
    save_pretrained(lm, d/'lm')
    clas = multifit_classifier_learner(dls, pretrained=d/'lm', **TINY)
    save_pretrained(clas, d/'clas')
    return d, lm, clas

def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst

def test_malicious_pickle_refused(packages, tmp_path):
    d, _, _ = packages
    pkg = _copy(d/'clas', tmp_path/'evil')
    marker = tmp_path/'pwned'
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    torch.save({'x': Evil()}, pkg/'model.pth')  # a pickle that runs a command when unpickled
    cfg = json.loads((pkg/'config.json').read_text())
    import hashlib
    cfg['model_sha256'] = hashlib.sha256((pkg/'model.pth').read_bytes()).hexdigest()  # the attacker fixes the checksum
    cfg['model_bytes'] = (pkg/'model.pth').stat().st_size                             # and the size
    (pkg/'config.json').write_text(json.dumps(cfg))
    with pytest.raises(PackageError, match='refusing to load'): load_package(pkg)
    assert not marker.exists()

def test_corrupt_and_incomplete_packages(packages, tmp_path):
    d, _, _ = packages
    with pytest.raises(PackageError, match='no model package'): load_package(tmp_path/'nothing')
    pkg = _copy(d/'clas', tmp_path/'p1')
    data = bytearray((pkg/'model.pth').read_bytes()); data[-10] ^= 0xFF; (pkg/'model.pth').write_bytes(bytes(data))
    with pytest.raises(PackageError, match='checksum'): load_package(pkg)
    pkg = _copy(d/'clas', tmp_path/'p2'); (pkg/'config.json').write_text('{')
    with pytest.raises(PackageError, match='corrupt'): load_package(pkg)
    pkg = _copy(d/'clas', tmp_path/'p3'); shutil.rmtree(pkg/'tokenizer')
    with pytest.raises(PackageError, match='tokenizer is missing'): load_package(pkg)
    pkg = _copy(d/'clas', tmp_path/'p4'); (pkg/'tokenizer'/'spm.model').write_bytes(b'junk')
    with pytest.raises(PackageError, match='bad tokenizer'): load_package(pkg)

def test_encoder_mismatch_names_the_difference(sample, packages):
    sd, tok, dls, lm_dls = sample
    d, _, _ = packages
    with pytest.raises(PackageError, match='n_hid: package 24 vs learner 32'):
        multifit_classifier_learner(dls, pretrained=d/'lm', **{**TINY, 'n_hid': 32})
    with pytest.raises(PackageError, match='n_layers: package 2 vs learner 3'):
        multifit_classifier_learner(dls, pretrained=d/'lm', **{**TINY, 'n_layers': 3})
    with pytest.raises(PackageError, match='arch: package AWD_QRNN vs learner AWD_LSTM'):
        multifit_classifier_learner(dls, pretrained=d/'lm', arch='AWD_LSTM', **TINY)
    other_tok = SPTokenizer.train(sd.corpus(1500)[::-1], lang='de', vocab_sz=500)
    other = text_dataloaders(other_tok, sd.train[:100], sd.valid[:30], label_col='label', bs=16, seq_len=24)
    with pytest.raises(PackageError, match='vocab_sz: package 600 vs learner 500'):
        multifit_classifier_learner(other, pretrained=d/'lm', **TINY)

def test_classifier_keeps_lm_tokenizer(packages, tmp_path):
    d, lm, clas = packages
    assert load_package(d/'clas').tokenizer.fingerprint == load_package(d/'lm').tokenizer.fingerprint
    assert torch.equal(_encoder_of(clas.model).encoder.weight, _encoder_of(lm.model).encoder.weight)

def test_atomic_save_keeps_old_package(packages, tmp_path, monkeypatch):
    d, lm, clas = packages
    pkg = _copy(d/'clas', tmp_path/'keep')
    before = {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()}
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', boom)
    with pytest.raises(OSError, match='disk full'): save_pretrained(clas, pkg)
    assert {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ['keep']  # no temp directory left behind
    load_package(pkg)

def test_refuses_to_overwrite_non_package(packages, tmp_path):
    d, lm, clas = packages
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'thesis.tex').write_text('precious')
    with pytest.raises(FileExistsError, match='not a model package'): save_pretrained(clas, tmp_path/'mine')
    assert (tmp_path/'mine'/'thesis.tex').read_text() == 'precious'

def test_preset_saved_and_overridable(packages, sample):
    d, lm, clas = packages
    p = load_package(d/'clas').preset
    assert p.stage == 'classifier' and p.label_smoothing == 0.1 and p.n_hid == TINY['n_hid']
    assert load_package(d/'lm').preset.stage == 'pretrain'
    sd, tok, dls, lm_dls = sample
    learn = multifit_classifier_learner(dls, preset=p, epochs=7, label_smoothing=0.)
    assert learn.preset.epochs == 7 and learn.preset.n_hid == TINY['n_hid']
    assert type(learn.loss_func).__name__ == 'CrossEntropyLossFlat'

def test_fit_one_cycle_uses_multifit_schedule(sample):
    sd, tok, dls, lm_dls = sample
    learn = multifit_classifier_learner(dls, **TINY)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    lrs, moms = learn.recorder.hps['lr'], learn.recorder.hps['mom']
    n = len(lrs)
    def expected(pos):  # fastai v1 one-cycle: cosine 1e-2/25 -> 1e-2 over 30 % of the steps, then -> 1e-2/25e4
        cos = lambda a, b, p: b + (a - b) / 2 * (1 + np.cos(np.pi * p))
        return cos(1e-2 / 25, 1e-2, pos / 0.3) if pos < 0.3 else cos(1e-2, 1e-2 / 25e4, (pos - 0.3) / 0.7)
    np.testing.assert_allclose(lrs, [expected(i / n) for i in range(n)], rtol=1e-4)
    assert abs(moms[0] - 0.8) < 1e-6 and abs(min(moms) - 0.7) < 0.01

def test_bad_data_errors(sample):
    sd, tok, dls, lm_dls = sample
    with pytest.raises(KeyError, match=r"no column\(s\) \['body'\]"):
        text_dataloaders(tok, sd.train, sd.valid, text_col='body', label_col='label')
    with pytest.raises(ValueError, match=r'1 row\(s\) without text .*: row 1 '):
        text_dataloaders(tok, sd.train.assign(text=[None] + list(sd.train.text[1:])), sd.valid, label_col='label')
    with pytest.raises(ValueError, match=r"1 row\(s\) without a label in 'label': row 1 "):
        text_dataloaders(tok, sd.train.assign(label=[None] + list(sd.train.label[1:])), sd.valid, label_col='label')
    with pytest.raises(ValueError, match='no rows'): text_dataloaders(tok, sd.train[:0], sd.valid, label_col='label')
