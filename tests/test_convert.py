"""Converting original (fastai v1) MultiFiT models: a synthetic v1 model directory in the released layout, checked
against a reference forward pass written here in plain torch."""
import io, os, pickle
from pathlib import Path
import pytest, torch
import sentencepiece as spm
from multifit_fastai.convert import (convert_multifit_v1, ConversionError, V1_SPECIAL_TOKENS, sp_pieces, sp_trainer_spec,
                                     pb_fields, TrainerField as F)
from multifit_fastai.data import sample_data
from multifit_fastai.tokenizer import SPTokenizer, SPECIAL_TOKENS, apply_rules, _rule_fns, UNK_ID, BOS_ID
from multifit_fastai.learner import load_package, text_dataloaders, multifit_lm_learner, multifit_classifier_learner

EMB, N_HID, N_LAYERS = 16, 24, 2
RULES = _rule_fns(True)
TEXTS = ['Das ist SEHR gut!!!! Über den Fluss ☃ und ﬁx.', 'ja ja ja ja nein', '', 'ÉTÉ in PARIS, MP3 und GNOME ✓✓']

# ---- the v1 side: SentencePiece model, itos, checkpoint, tokenization, forward pass ----

@pytest.fixture(scope='module')
def sd_data(): return sample_data()

@pytest.fixture(scope='module')
def v1_spm(sd_data):
    "A SentencePiece model trained the way fastai v1's `train_sentencepiece` did, and v1's itos for it"
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([apply_rules(l, RULES) for l in sd_data.corpus(2000)]), model_writer=buf,
        vocab_size=300, model_type='unigram', unk_id=8, pad_id=-1, bos_id=-1, eos_id=-1, character_coverage=0.9998,
        user_defined_symbols=['▁' + t for t in V1_SPECIAL_TOKENS], num_threads=1, minloglevel=2)
    proto = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    itos = [sp.id_to_piece(i) for i in range(len(sp))]
    itos = [p[1:] if p[1:] in V1_SPECIAL_TOKENS else p for p in itos]  # v1 shows its specials without '▁'
    assert itos[:10] == V1_SPECIAL_TOKENS + ['<unk>', '▁'] or itos[:9] == V1_SPECIAL_TOKENS + ['<unk>']
    return proto, sp, itos

def v1_state_dict(vocab_sz, mid='layers.0.', seed=0, emb_sz=EMB, n_hid=N_HID, n_layers=N_LAYERS, window0=2):
    "Random weights of a QRNN LM under v1's keys (tied decoder, a `.module.weight` copy that must be ignored)"
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab_sz, emb_sz, generator=g) * 0.5
    sd = {'0.encoder.weight': emb, '0.encoder_dp.emb.weight': emb}
    for l in range(n_layers):
        n_in, n_out = (window0 * emb_sz if l == 0 else n_hid), (n_hid if l < n_layers - 1 else emb_sz)
        w = torch.randn(3 * n_out, n_in, generator=g) * 0.3
        sd[f'0.rnns.{l}.{mid}linear.weight_raw'] = w
        sd[f'0.rnns.{l}.{mid}linear.module.weight'] = w * (torch.rand(w.shape, generator=g) > 0.5) * 2
        sd[f'0.rnns.{l}.{mid}linear.module.bias'] = torch.randn(3 * n_out, generator=g) * 0.2
    sd['1.decoder.weight'] = emb
    sd['1.decoder.bias'] = torch.randn(vocab_sz, generator=g)
    return sd

def write_v1_dir(path: Path, proto, itos, sd, wrap=False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path/'spm.model').write_bytes(proto)
    (path/'itos.pkl').write_bytes(pickle.dumps(itos))
    torch.save({'model': sd, 'opt': {'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0, 1]}]}} if wrap else sd,
               path/'lm_best.pth')
    return path

def v1_ids(sp, itos, text):
    "v1 tokenization: 'xxbos ' + the rules, the v1 SentencePiece model, pieces looked up in itos"
    pieces = [sp.id_to_piece(i) for i in sp.encode('xxbos ' + apply_rules(text, RULES))]
    return [itos.index(p[1:] if p[1:] in V1_SPECIAL_TOKENS else p) for p in pieces]

def ref_forward(sd, ids, mid):
    "The v1 LM in plain torch: embedding, QRNN layers (window 2 on layer 0, gates Z F O), tied decoder"
    x = sd['0.encoder.weight'][torch.tensor(ids)].double()
    l = 0
    while f'0.rnns.{l}.{mid}linear.weight_raw' in sd:
        w, b = sd[f'0.rnns.{l}.{mid}linear.weight_raw'].double(), sd[f'0.rnns.{l}.{mid}linear.module.bias'].double()
        if l == 0: x = torch.cat([x, torch.cat([torch.zeros_like(x[:1]), x[:-1]])], 1)  # [x_t, x_{t-1}], x_{-1} = 0
        z, f, o = (x @ w.T + b).chunk(3, 1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c, hs = torch.zeros_like(z[0]), []
        for t in range(len(z)):
            c = f[t] * z[t] + (1 - f[t]) * c
            hs.append(o[t] * c)
        x, l = torch.stack(hs), l + 1
    return x @ sd['1.decoder.weight'].double().T + sd['1.decoder.bias'].double()

def v1_index_of(tok: SPTokenizer, itos) -> dict:
    "For each of our ids, the v1 id of the same token (our xxunk is v1's <unk>; xxeos is new)"
    return {j: itos.index('<unk>' if s == 'xxunk' else s) for j, s in enumerate(tok.vocab) if s != 'xxeos'}

# ---- equivalence ----

@pytest.mark.parametrize('mid,wrap', [('layers.0.', False), ('', True), ('layers.0.', True)])
def test_converted_model_matches_v1(tmp_path, v1_spm, mid, wrap):
    proto, sp, itos = v1_spm
    sd = v1_state_dict(len(itos), mid=mid)
    out = convert_multifit_v1(write_v1_dir(tmp_path/'v1', proto, itos, sd, wrap), tmp_path/'pkg', lang='de')
    pkg = load_package(out)
    p, tok = pkg.preset, pkg.tokenizer
    assert (pkg.kind, p.emb_sz, p.n_hid, p.n_layers, p.vocab_sz, p.arch) == ('lm', EMB, N_HID, N_LAYERS, len(itos), 'AWD_QRNN')
    assert tok.vocab[:9] == SPECIAL_TOKENS and len(tok) == len(itos)
    back = v1_index_of(tok, itos)
    assert sorted(back.values()) == sorted(set(range(len(itos))) - {0})  # every v1 token but ▁xxunk has an id
    model = pkg.model()
    assert not model.training
    for text in TEXTS:
        ids, ref_ids = tok(text).tolist(), v1_ids(sp, itos, text)
        assert ids[0] == BOS_ID and [back[i] for i in ids] == ref_ids  # the same tokens, one for one
        model.reset()
        with torch.no_grad(): y = model(torch.tensor([ids]))[0][0].double()
        ref = ref_forward(sd, ref_ids, mid)
        cols = sorted(back)
        torch.testing.assert_close(y[:, cols], ref[:, [back[j] for j in cols]], atol=2e-5, rtol=1e-4)
    assert UNK_ID in tok(TEXTS[0]).tolist()  # ☃ is outside the alphabet: v1's <unk> row, our xxunk
    eos = SPECIAL_TOKENS.index('xxeos')
    st = pkg.state
    torch.testing.assert_close(st['0.encoder.weight'][eos], sd['0.encoder.weight'].mean(0))
    torch.testing.assert_close(st['1.decoder.bias'][eos], sd['1.decoder.bias'].mean())
    assert pkg.config['converted_from']['format'] == 'fastai v1 MultiFiT'

def test_segmentation_identical_on_many_texts(tmp_path, v1_spm, sd_data):
    proto, sp, itos = v1_spm
    out = convert_multifit_v1(write_v1_dir(tmp_path/'v1', proto, itos, v1_state_dict(len(itos))), tmp_path/'pkg')
    tok = load_package(out).tokenizer
    back = v1_index_of(tok, itos)
    texts = list(sd_data.valid.text) + list(sd_data.train.text[:300])
    for text, ids in zip(texts, tok.encode_batch(texts, n_workers=1)):
        assert [back[i] for i in ids.tolist()] == v1_ids(sp, itos, text)

def test_converted_spm_proto(tmp_path, v1_spm, sd_data):
    "The rewritten model has the trainer spec of a model trained by SPTokenizer, and v1's normalizer untouched"
    proto, sp, itos = v1_spm
    out = convert_multifit_v1(write_v1_dir(tmp_path/'v1', proto, itos, v1_state_dict(len(itos))), tmp_path/'pkg')
    new = (out/'tokenizer'/'spm.model').read_bytes()
    ours = SPTokenizer.train(sd_data.corpus(300), vocab_sz=200, n_threads=1).model_proto
    keys = (F.UNK_ID, F.PAD_ID, F.BOS_ID, F.EOS_ID, F.UNK_PIECE, F.PAD_PIECE, F.UNK_SURFACE, F.USER_DEFINED_SYMBOLS)
    a, b = sp_trainer_spec(new), sp_trainer_spec(ours)
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert [raw for f, _, _, raw in pb_fields(new) if f in (3, 5)] == [raw for f, _, _, raw in pb_fields(proto) if f in (3, 5)]
    # same pieces with the same scores, only reordered (v1's two unknowns merged into xxunk, ▁xxeos new)
    old = {p.piece: p.score for p in sp_pieces(proto)}
    newp = {p.piece: p.score for p in sp_pieces(new)}
    assert set(old) - set(newp) == {'▁xxunk', '▁xxpad', '<unk>'} and set(newp) - set(old) == {'xxunk', 'xxpad', '▁xxeos'}
    assert all(newp[k] == v for k, v in old.items() if k in newp)
    sp2 = spm.SentencePieceProcessor(model_proto=new)
    assert (sp2.unk_id(), sp2.pad_id(), sp2.bos_id(), sp2.eos_id()) == (0, 1, -1, -1)

def test_learners_from_converted_package(tmp_path, v1_spm, sd_data):
    proto, sp, itos = v1_spm
    sd = v1_state_dict(len(itos))
    out = convert_multifit_v1(write_v1_dir(tmp_path/'v1', proto, itos, sd), tmp_path/'pkg')
    pkg = load_package(out)
    train, valid = sd_data.train[:200], sd_data.valid[:50]
    lm_dls = text_dataloaders(pkg.tokenizer, train, valid, bs=8, seq_len=16)
    lm = multifit_lm_learner(lm_dls, preset=pkg.preset, pretrained=out)
    torch.testing.assert_close(lm.model.state_dict()['1.decoder.bias'], pkg.state['1.decoder.bias'])
    clas_dls = text_dataloaders(pkg.tokenizer, train, valid, label_col='label', bs=8, seq_len=16)
    clas = multifit_classifier_learner(clas_dls, pretrained=out, emb_sz=EMB, n_hid=N_HID, n_layers=N_LAYERS)
    enc = clas.model[0].module
    torch.testing.assert_close(enc.encoder.weight, pkg.state['0.encoder.weight'])
    torch.testing.assert_close(enc.rnns[1].layers[0].linear.weight_raw, sd['0.rnns.1.layers.0.linear.weight_raw'])

# ---- bad input ----

@pytest.fixture
def v1_dir(tmp_path, v1_spm):
    proto, sp, itos = v1_spm
    return write_v1_dir(tmp_path/'v1', proto, itos, v1_state_dict(len(itos)))

@pytest.mark.parametrize('name', ['lm_best.pth', 'itos.pkl', 'spm.model'])
def test_missing_file(tmp_path, v1_dir, name):
    (v1_dir/name).unlink()
    with pytest.raises(FileNotFoundError, match=name): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not (tmp_path/'pkg').exists()

def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match='no model directory'): convert_multifit_v1(tmp_path/'nope', tmp_path/'pkg')

class _RunsCode:
    "Unpickling this would create a file (a harmless stand-in for arbitrary code)"
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, 'w'))

def test_itos_pickle_that_runs_code_is_refused(tmp_path, v1_dir):
    marker = tmp_path/'pwned'
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(['xxunk', _RunsCode(marker)]))
    with pytest.raises(ConversionError, match='only a list of strings'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not marker.exists()

@pytest.mark.parametrize('obj', [{'itos': ['a']}, ['a', 1], ('a', 'b'), ['a', 'a']])
def test_itos_not_a_list_of_str(tmp_path, v1_dir, obj):
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(obj))
    with pytest.raises(ConversionError, match='not a list of strings|duplicate'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_pth_that_runs_code_is_refused(tmp_path, v1_dir):
    marker = tmp_path/'pwned'
    torch.save({'model': {'0.encoder.weight': torch.zeros(2, 2)}, 'x': _RunsCode(marker)}, v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match='not a plain state dict'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not marker.exists()

def test_pth_not_a_state_dict(tmp_path, v1_dir):
    torch.save([torch.zeros(2)], v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match='not a state dict'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_itos_length_vs_embedding(tmp_path, v1_dir, v1_spm):
    proto, sp, itos = v1_spm
    torch.save(v1_state_dict(len(itos) + 5), v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match=f'{len(itos)} tokens but the embedding .* has {len(itos) + 5} rows'):
        convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_itos_vs_spm(tmp_path, v1_dir, v1_spm):
    proto, sp, itos = v1_spm
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(itos[:-1]))
    with pytest.raises(ConversionError, match='tokens but spm.model has'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(itos[:-1] + ['▁nonsense']))
    with pytest.raises(ConversionError, match='no token for the piece'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_spm_not_v1(tmp_path, v1_dir, sd_data):
    (v1_dir/'spm.model').write_bytes(SPTokenizer.train(sd_data.corpus(300), vocab_sz=200, n_threads=1).model_proto)
    with pytest.raises(ConversionError, match='lacks the special piece'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    (v1_dir/'spm.model').write_bytes(b'not a model')
    with pytest.raises(ConversionError, match='spm.model'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

@pytest.mark.parametrize('change,msg', [
    (lambda sd: sd.update({'1.decoder.weight': sd['1.decoder.weight'] + 1}), 'not tied'),
    (lambda sd: sd.update({'0.rnns.1.layers.0.linear.module.bias': torch.zeros(5)}), r'module\.bias'),
    (lambda sd: sd.update({'0.rnns.0.extra': torch.zeros(1)}), 'unexpected key'),
    (lambda sd: sd.pop('1.decoder.bias'), "no '1.decoder.bias'"),
    (lambda sd: sd.update({'0.rnns.0.linear.weight_raw': sd['0.rnns.0.layers.0.linear.weight_raw']}), 'two tensors'),
])
def test_bad_state_dict(tmp_path, v1_dir, v1_spm, change, msg):
    sd = v1_state_dict(len(v1_spm[2]))
    change(sd)
    torch.save(sd, v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match=msg): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not (tmp_path/'pkg').exists()

def test_window_one_refused(tmp_path, v1_dir, v1_spm):
    torch.save(v1_state_dict(len(v1_spm[2]), window0=1), v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match='window'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_out_dir_not_a_package_is_kept(tmp_path, v1_dir):
    out = tmp_path/'mine'; out.mkdir(); (out/'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError): convert_multifit_v1(v1_dir, out)
    assert (out/'notes.txt').read_text() == 'keep me'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.mine')] == []
