"""Converting original (fastai v1) MultiFiT models. The fixtures are model directories in each of the three layouts
that fastai v1 setups wrote, built here from their documented behaviour (small SentencePiece models trained on real
DDTP text through the original pipeline, random small weights, old and new `torch.save` formats). The original text
pipeline and the original forward pass are re-written here as references, independently of the library."""
import html, io, json, pickle, re, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
import sentencepiece as spm
from conftest import ddtp_path
from multifit_fastai.convert import convert_multifit_v1, ConversionError, sp_pieces, sp_trainer_spec, pb_fields, TrainerField as F
from multifit_fastai.tokenizer import SPTokenizer, SPECIAL_TOKENS, UNK_ID
from multifit_fastai.package import load_package
from multifit_fastai.pipeline import MultiFiT

sacremoses = pytest.importorskip('sacremoses')
EMB, N_HID, N_LAYERS = 16, 24, 2

# ---- the reference: the original pipeline, from fastai v1's transform.py/data.py and multifit's Moses step ----

S8 = ['xxunk', 'xxpad', 'xxbos', 'xxfld', 'xxmaj', 'xxup', 'xxrep', 'xxwrep']            # fastai 1.0.47
S9 = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxmaj', 'xxup', 'xxrep', 'xxwrep']   # fastai 1.0.53+
LAYOUTS = {  # user-defined symbols, how text is split before the case rules, whether ids come from pieces via itos
    'paper': dict(symbols=S8, split_space=True, via_itos=True),
    'fastai': dict(symbols=['▁' + t for t in S9], split_space=False, via_itos=False),
    'multifit': dict(symbols=['▁' + t for t in S8], split_space=False, via_itos=False)}

def ref_pre(t):
    "fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces of fastai v1"
    for a, b in [('#39;', "'"), ('amp;', '&'), ('#146;', "'"), ('nbsp;', ' '), ('#36;', '$'), ('\\n', '\n'), ('quot;', "'"),
                 ('<br />', '\n'), ('\\"', '"'), ('<unk>', 'xxunk'), (' @.@ ', '.'), (' @-@ ', '-'), (' @,@ ', ','),
                 ('\\', ' \\ ')]:
        t = t.replace(a, b)
    t = re.sub('  +', ' ', html.unescape(t))
    t = re.sub(r'(\S)(\1{3,})', lambda m: ' xxrep %d %s ' % (len(m.group(2)) + 1, m.group(1)), t)
    t = re.sub(r'(\b\w+\W+)(\1{3,})', lambda m: ' xxwrep %d %s ' % (len(m.group(2).split()) + 1, m.group(1)), t)
    t = re.sub(r'([/#\n])', r' \1 ', t)
    return re.sub(' {2,}', ' ', t)

def ref_post(toks):
    "replace_all_caps then deal_caps of fastai v1"
    out = []
    for t in toks:
        if t.isupper() and len(t) > 1: out += ['xxup', t.lower()]
        else: out.append(t)
    res = []
    for t in out:
        if not t: continue
        if len(t) > 1 and t[0].isupper() and t[1:].islower(): res.append('xxmaj')
        res.append(t.lower())
    return res

_MOSES = {}
def ref_text(text, lang, layout):
    "What SentencePiece saw: _join_texts(mark_fields=True), MosesPreprocessingFunc, the rules"
    if lang not in _MOSES: _MOSES[lang] = sacremoses.MosesTokenizer(lang)
    t = 'xxbos xxfld 1 ' + text
    if not LAYOUTS[layout]['split_space']: t = t.strip(' ')  # SPProcessor's apply_rules
    t = ref_pre(_MOSES[lang].tokenize(t, return_str=True, escape=True))
    return ' '.join(ref_post(t.split(' ') if LAYOUTS[layout]['split_space'] else t.split()))

def ref_ids(sp, itos, text, lang, layout):
    "The original ids: pieces looked up in itos with default 0 (original scripts) or EncodeAsIds (SPProcessor)"
    t = ref_text(text, lang, layout)
    if LAYOUTS[layout]['via_itos']:
        stoi = {s: i for i, s in enumerate(itos)}
        return [stoi.get(p, 0) for p in sp.encode_as_pieces(t)]
    return sp.encode_as_ids(t)

def ref_forward(sd, ids):
    "The v1 QRNN LM in plain torch (float64): embedding, QRNN layers (window 2 on layer 0, gates Z F O), tied decoder"
    sd = {k.replace('layers.0.', ''): v for k, v in sd.items()}
    x, l = sd['0.encoder.weight'][torch.tensor(ids)].double(), 0
    while f'0.rnns.{l}.linear.weight_raw' in sd:
        w, b = sd[f'0.rnns.{l}.linear.weight_raw'].double(), sd[f'0.rnns.{l}.linear.module.bias'].double()
        if l == 0: x = torch.cat([x, torch.cat([torch.zeros_like(x[:1]), x[:-1]])], 1)  # [x_t, x_{t-1}], x_{-1} = 0
        z, f, o = (x @ w.T + b).chunk(3, 1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c, hs = torch.zeros_like(z[0]), []
        for t in range(len(z)):
            c = f[t] * z[t] + (1 - f[t]) * c
            hs.append(o[t] * c)
        x, l = torch.stack(hs), l + 1
    return x @ sd['1.decoder.weight'].double().T + sd['1.decoder.bias'].double()

# ---- fixtures: v1 model directories ----

def ddtp_texts(lang, split):
    f = ddtp_path(lang, split)
    if not f.is_file(): pytest.skip(f'development data not found: {f}')
    return list(pd.read_csv(f).text.astype(str))

def train_spm(lang, layout, vocab_sz):
    "A SentencePiece model trained the way the layout's code trained it (unk right after the specials, no pad/bos/eos)"
    buf = io.BytesIO()
    sym = LAYOUTS[layout]['symbols']
    lines = [ref_text(t, lang, layout) for t in ddtp_texts(lang, 'train')]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_sz, model_type='unigram', unk_id=len(sym),
        pad_id=-1, bos_id=-1, eos_id=-1, user_defined_symbols=sym, character_coverage=1.0 if lang == 'de' else 0.99,
        num_threads=1, minloglevel=2)
    proto = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    return proto, sp, [sp.id_to_piece(i) for i in range(len(sp))]  # itos: the first column of spm.vocab

_SPM = {}
def v1_spm(lang, layout):
    if (lang, layout) not in _SPM: _SPM[lang, layout] = train_spm(lang, layout, 1000 if lang == 'de' else 1500)
    return _SPM[lang, layout]

def v1_state_dict(vocab_sz, mid='', seed=0, window0=2):
    "Random weights of a QRNN LM under v1's keys (tied decoder, a `.module.weight` copy that must be ignored)"
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab_sz, EMB, generator=g) * 0.5
    sd = {'0.encoder.weight': emb, '0.encoder_dp.emb.weight': emb}
    for l in range(N_LAYERS):
        n_in, n_out = (window0 * EMB if l == 0 else N_HID), (N_HID if l < N_LAYERS - 1 else EMB)
        w = torch.randn(3 * n_out, n_in, generator=g) * 0.3
        sd[f'0.rnns.{l}.{mid}linear.weight_raw'] = w
        sd[f'0.rnns.{l}.{mid}linear.module.weight'] = w * (torch.rand(w.shape, generator=g) > 0.5) * 2
        sd[f'0.rnns.{l}.{mid}linear.module.bias'] = torch.randn(3 * n_out, generator=g) * 0.2
    sd['1.decoder.weight'] = emb
    sd['1.decoder.bias'] = torch.randn(vocab_sz, generator=g)
    return sd

def write_v1_dir(path: Path, lang, layout, mid='', legacy=True, wrap=False, info=True):
    "A model directory as the layout's code wrote it: lm_best.pth, itos.pkl, spm.model, spm.vocab, info.json"
    proto, sp, itos = v1_spm(lang, layout)
    sd = v1_state_dict(len(itos), mid=mid)
    path.mkdir(parents=True, exist_ok=True)
    (path/'spm.model').write_bytes(proto)
    (path/'spm.vocab').write_text(''.join(f'{p}\t{sp.get_score(i)}\n' for i, p in enumerate(itos)), encoding='utf-8')
    (path/'itos.pkl').write_bytes(pickle.dumps(itos))
    obj = {'model': sd, 'opt': {'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0, 1]}]}} if wrap else sd
    torch.save(obj, path/'lm_best.pth', _use_new_zipfile_serialization=not legacy)
    if info: (path/'info.json').write_text(json.dumps({'dataset_path': f'data/wiki/{lang}-100', 'nh': N_HID, 'nl': N_LAYERS,
                                                       'qrnn': True, 'tokenizer': 'sp'}))
    return path, sd

def back_map(tok, layout, itos):
    "For each v1 id, our id (by token name: specials and <unk> -> xxunk; other pieces by string)"
    ours = {p: i for i, p in enumerate(tok.vocab)}
    name = lambda p: p[1:] if p[1:] in S9 else p
    return [UNK_ID if p == '<unk>' else SPECIAL_TOKENS.index(name(p)) if name(p) in S9 else ours[p] for p in itos]

# ---- every layout converts, with the original pipeline's ids and logits ----

CASES = [('paper', '', True, False), ('paper', 'layers.0.', False, True), ('fastai', 'layers.0.', True, False),
         ('fastai', '', False, True), ('multifit', '', True, True), ('multifit', 'layers.0.', False, False)]

@pytest.mark.parametrize('layout,mid,legacy,wrap', CASES)
def test_layout_converts(tmp_path, layout, mid, legacy, wrap):
    src, sd = write_v1_dir(tmp_path/'v1', 'de', layout, mid, legacy, wrap)
    pkg = load_package(convert_multifit_v1(src, tmp_path/'pkg'))
    proto, sp, itos = v1_spm('de', layout)
    p, tok = pkg.preset, pkg.tokenizer
    assert (pkg.kind, p.emb_sz, p.n_hid, p.n_layers, p.arch) == ('lm', EMB, N_HID, N_LAYERS, 'AWD_QRNN')
    assert len(tok) == len(itos) - (layout == 'fastai') and tok.vocab[:9] == SPECIAL_TOKENS
    assert (tok.v1.layout, tok.v1.lang) == (layout, 'de')  # the language from info.json
    cf = pkg.config['converted_from']
    assert (cf['layout'], cf['torch_format'], cf['keys']) == (layout, 'legacy' if legacy else 'zip', 'layers.0.' if mid else 'plain')
    back, model = back_map(tok, layout, itos), pkg.model()
    unk_row = 0 if layout == 'paper' else itos.index('<unk>')  # the row unknown text was trained on
    torch.testing.assert_close(pkg.state['0.encoder.weight'][UNK_ID], sd['0.encoder.weight'][unk_row])
    texts = ddtp_texts('de', 'valid')[:8] + ['Das ist SEHR gut!!!! ☃ McDonald, ja ja ja ja nein']
    for text in texts:
        ids, v1 = tok(text).tolist(), ref_ids(sp, itos, text, 'de', layout)
        assert ids == [back[i] for i in v1]
        with torch.no_grad(): model.reset(); y = model(torch.tensor([ids]))[0][0].double()
        ref = ref_forward(sd, v1)
        cols = [j for j, s in enumerate(tok.vocab) if s != 'xxeos' or layout == 'fastai']
        v1_of = {o: i for i, o in reversed(list(enumerate(back)))}  # our id -> a v1 id (xxunk: the trained row)
        v1_of[UNK_ID] = unk_row
        assert (y[:, cols] - ref[:, [v1_of[j] for j in cols]]).abs().max() < 1e-4

def test_special_pieces_and_unknowns(tmp_path):
    "The released layout: a lone '▁' before each special; an unknown character is xxunk (v1 id 0), never <unk>"
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'paper')
    tok = load_package(convert_multifit_v1(src, tmp_path/'pkg')).tokenizer
    pieces = [tok.vocab[i] for i in tok('Das ist ☃').tolist()]
    assert pieces[:6] == ['▁', 'xxbos', '▁', 'xxfld', '▁1', '▁'] and pieces[6] == 'xxmaj'
    assert pieces[-1] == 'xxunk'
    frac = np.mean([tok.vocab[i] == '▁' for t in ddtp_texts('de', 'valid')[:200] for i in tok(t).tolist()])
    assert 0.1 < frac < 0.3  # about one token in five is a lone '▁' on German text

# hand-derived from the documented rules (Moses with escaping, v1's fix_html / rep / wrep / case rules, field marks)
TRICKY = [
    ('Das ist SEHR gut', 'xxbos xxfld 1 xxmaj das ist xxup sehr gut'),
    ('McDonald und A mit Debian-Paketen', 'xxbos xxfld 1 mcdonald und a mit debian-paketen'),
    ('(OCR) in 2D', 'xxbos xxfld 1 ( xxup ocr ) in xxup 2d'),
    ('Sooooo gut!!!!', 'xxbos xxfld 1 s xxrep 5 o gut ! ! ! !'),  # Moses splits the !, v1 needs 4 repeats
    ('ja ja ja ja nein', 'xxbos xxfld 1 xxwrep 4 ja nein'),
    ('Version 3,5 kostet 1.000 Euro', 'xxbos xxfld 1 xxmaj version 3,5 kostet 1.000 xxmaj euro'),
    ('Er sagte "Hallo" & ging', "xxbos xxfld 1 xxmaj er sagte &' xxmaj hallo &' && ging"),
    ('a &amp; b', 'xxbos xxfld 1 a && amp ; b'),
    ('x/y #1', 'xxbos xxfld 1 x / y # 1'),
]

@pytest.mark.parametrize('text,want', TRICKY)
def test_tricky_strings(tmp_path, text, want):
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'multifit')
    tok = load_package(convert_multifit_v1(src, tmp_path/'pkg')).tokenizer
    assert tok.v1.rule_text(text) == want == ref_text(text, 'de', 'multifit')

def test_tricky_japanese(tmp_path):
    src, _ = write_v1_dir(tmp_path/'v1', 'ja', 'paper')
    tok = load_package(convert_multifit_v1(src, tmp_path/'pkg')).tokenizer
    assert tok.v1.rule_text('「テスト」です。ABCとMcDonald!!!!') == 'xxbos xxfld 1 「テスト」です。abcとmcdonald ! ! ! !'

# ---- the targets: segmentation match rate and logits on real German and Japanese text ----

@pytest.mark.parametrize('lang', ['de', 'ja'])
@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_match_rate_on_ddtp(tmp_path, lang, layout):
    src, sd = write_v1_dir(tmp_path/'v1', lang, layout, legacy=layout != 'fastai')
    pkg = load_package(convert_multifit_v1(src, tmp_path/'pkg'))
    proto, sp, itos = v1_spm(lang, layout)
    tok, back = pkg.tokenizer, back_map(pkg.tokenizer, layout, itos)
    texts = ddtp_texts(lang, 'valid')
    t0 = time.time()
    ours = tok.encode_batch(texts, n_workers=1)
    secs = time.time() - t0
    refs = [ref_ids(sp, itos, t, lang, layout) for t in texts]
    same = [o.tolist() == [back[i] for i in r] for o, r in zip(ours, refs)]
    rate = float(np.mean(same))
    print(f'\n{lang} {layout}: {sum(same)}/{len(texts)} documents identical ({rate:.2%}), '
          f'{sum(len(r) for r in refs)} tokens, encoded in {secs:.1f}s')
    assert rate >= 0.95
    model, worst = pkg.model(), 0.
    unk_row = 0 if layout == 'paper' else itos.index('<unk>')
    v1_of = {o: i for i, o in reversed(list(enumerate(back)))}
    v1_of[UNK_ID] = unk_row
    cols = [j for j in range(len(tok)) if j in v1_of]
    for k in [i for i, s in enumerate(same) if s][:20]:
        with torch.no_grad(): model.reset(); y = model(ours[k][None])[0][0].double()
        worst = max(worst, float((y[:, cols] - ref_forward(sd, refs[k])[:, [v1_of[j] for j in cols]]).abs().max()))
    print(f'{lang} {layout}: logits max-abs-diff {worst:.2e} on 20 documents')
    assert worst < 1e-4

# ---- fine-tuning and classification from a converted LM ----

def test_converted_lm_finetuned_as_classifier(tmp_path):
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'paper')
    exp = tmp_path/'exp'
    convert_multifit_v1(src, exp/'lm_pretrained')
    assert (exp/'tokenizer'/'tokenizer.json').is_file()  # the experiment tokenizes with the original pipeline
    train, valid = pd.read_csv(ddtp_path('de', 'train')).iloc[:160], pd.read_csv(ddtp_path('de', 'valid')).iloc[:40]
    m = MultiFiT(exp, lang='de', size='cpu-small', verbose=False,
                 overrides=dict(emb_sz=EMB, n_hid=N_HID, n_layers=N_LAYERS, bs=8, bptt=16))
    assert m.tokenizer().v1 is not None
    m.finetune_lm(list(train.text), valid=list(valid.text), epochs=1)
    out = m.train_classifier(train, valid=valid, epochs=1)
    pkg = load_package(out)
    assert pkg.tokenizer.v1.layout == 'paper' and pkg.tokenizer.fingerprint == m.tokenizer().fingerprint
    assert m.history['classifier']['from_package'].endswith('lm_finetuned')
    preds = pkg.predict(list(valid.text[:5]))
    assert len(preds) == 5

def test_experiment_with_another_tokenizer_is_refused(tmp_path):
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'paper')
    other, _ = write_v1_dir(tmp_path/'v2', 'de', 'fastai')
    exp = tmp_path/'exp'
    convert_multifit_v1(other, exp/'lm_pretrained')
    with pytest.raises(ConversionError, match='holds another tokenizer'): convert_multifit_v1(src, exp/'lm_pretrained')
    assert load_package(exp/'lm_pretrained').tokenizer.v1.layout == 'fastai'  # the first conversion is kept

# ---- the tokenizer mode ----

def test_default_tokenizer_unchanged(tmp_path):
    "A tokenizer without the v1 pipeline saves no `v1` entry and keeps its fingerprint formula"
    import hashlib
    from multifit_fastai.data import sample_data
    tok = SPTokenizer.train(sample_data().corpus(300), vocab_sz=200, n_threads=1)
    h = hashlib.sha256(tok.model_proto); h.update(json.dumps([tok.rule_names, tok.add_bos]).encode())
    assert tok.fingerprint == h.hexdigest()[:16]
    tok.save(tmp_path/'t')
    assert 'v1' not in json.loads((tmp_path/'t'/'tokenizer.json').read_text())
    assert sorted(p.name for p in (tmp_path/'t').iterdir()) == ['spm.model', 'tokenizer.json']

def test_v1_tokenizer_save_load_pickle(tmp_path):
    src, _ = write_v1_dir(tmp_path/'v1', 'ja', 'fastai')
    pkg = load_package(convert_multifit_v1(src, tmp_path/'pkg'))
    tok, text = pkg.tokenizer, ddtp_texts('ja', 'valid')[0]
    assert (tmp_path/'pkg'/'tokenizer'/'v1_spm.model').is_file()
    again = pickle.loads(pickle.dumps(tok))
    assert again(text).tolist() == tok(text).tolist() and again.fingerprint == tok.fingerprint
    big = tok.encode_batch([text] * 40, n_workers=2, min_mp_chars=1)  # worker processes
    assert all(o.tolist() == tok(text).tolist() for o in big)

def test_missing_sacremoses_names_the_extra(tmp_path, monkeypatch):
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'paper')
    monkeypatch.setitem(sys.modules, 'sacremoses', None)
    with pytest.raises(ImportError, match=r"multifit_fastai\[v1\]"): convert_multifit_v1(src, tmp_path/'pkg')

# ---- bad input ----

@pytest.fixture
def v1_dir(tmp_path): return write_v1_dir(tmp_path/'v1', 'de', 'paper')[0]

@pytest.mark.parametrize('name', ['lm_best.pth', 'itos.pkl', 'spm.model'])
def test_missing_file(tmp_path, v1_dir, name):
    (v1_dir/name).unlink()
    with pytest.raises(FileNotFoundError, match=name): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not (tmp_path/'pkg').exists()

def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match='no model directory'): convert_multifit_v1(tmp_path/'nope', tmp_path/'pkg')

def test_language(tmp_path):
    src, _ = write_v1_dir(tmp_path/'v1', 'de', 'paper', info=False)
    with pytest.raises(ConversionError, match='give it with --lang'): convert_multifit_v1(src, tmp_path/'pkg')
    with pytest.raises(ConversionError, match='give it with --lang'): convert_multifit_v1(src, tmp_path/'pkg', lang='xx')
    assert load_package(convert_multifit_v1(src, tmp_path/'pkg', lang='de')).tokenizer.v1.lang == 'de'
    (src/'info.json').write_text(json.dumps({'arch': {'lang': 'fr'}}))
    with pytest.raises(ConversionError, match="says the model is 'fr'"): convert_multifit_v1(src, tmp_path/'p2', lang='de')
    (src/'info.json').write_text('{not json')
    with pytest.raises(ConversionError, match='corrupt'): convert_multifit_v1(src, tmp_path/'p2')

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
    torch.save({'model': {'0.encoder.weight': torch.zeros(2, 2)}, 'x': _RunsCode(marker)}, v1_dir/'lm_best.pth',
               _use_new_zipfile_serialization=False)
    with pytest.raises(ConversionError, match='not a plain state dict'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not marker.exists()

def test_itos_vs_spm(tmp_path, v1_dir):
    itos = v1_spm('de', 'paper')[2]
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(itos[:-1]))
    with pytest.raises(ConversionError, match='tokens but spm.model has'): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps(itos[:-1] + ['▁nonsense']))
    with pytest.raises(ConversionError, match="token 999 is '▁nonsense'"): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_synthetic_layout_refused(tmp_path, v1_dir):
    "A ▁-prefixed model with an itos that drops the ▁ (no fastai v1 setup wrote this) is refused, saying why"
    proto, sp, itos = v1_spm('de', 'multifit')
    (v1_dir/'spm.model').write_bytes(proto)
    (v1_dir/'itos.pkl').write_bytes(pickle.dumps([p[1:] if p[1:] in S8 else p for p in itos]))
    with pytest.raises(ConversionError, match="token 0 is 'xxunk', the piece is '▁xxunk'"): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_spm_not_v1(tmp_path, v1_dir):
    from multifit_fastai.data import sample_data
    (v1_dir/'spm.model').write_bytes(SPTokenizer.train(sample_data().corpus(300), vocab_sz=200, n_threads=1).model_proto)
    with pytest.raises(ConversionError, match=r"its first pieces are \['xxunk', 'xxpad', '▁xxbos'.*paper .*fastai"):
        convert_multifit_v1(v1_dir, tmp_path/'pkg')
    (v1_dir/'spm.model').write_bytes(b'not a model')
    with pytest.raises(ConversionError, match='spm.model'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

@pytest.mark.parametrize('change,msg', [
    (lambda sd: sd.update({'1.decoder.weight': sd['1.decoder.weight'] + 1}), 'not tied'),
    (lambda sd: sd.update({'0.rnns.1.linear.module.bias': torch.zeros(5)}), r'module\.bias'),
    (lambda sd: sd.update({'0.rnns.0.extra': torch.zeros(1)}), 'unexpected key'),
    (lambda sd: sd.pop('1.decoder.bias'), "no '1.decoder.bias'"),
    (lambda sd: sd.update({'0.rnns.0.layers.0.linear.weight_raw': sd['0.rnns.0.linear.weight_raw']}), 'two tensors'),
])
def test_bad_state_dict(tmp_path, v1_dir, change, msg):
    sd = v1_state_dict(len(v1_spm('de', 'paper')[2]))
    change(sd)
    torch.save(sd, v1_dir/'lm_best.pth', _use_new_zipfile_serialization=False)
    with pytest.raises(ConversionError, match=msg): convert_multifit_v1(v1_dir, tmp_path/'pkg')
    assert not (tmp_path/'pkg').exists()

def test_window_one_refused(tmp_path, v1_dir):
    torch.save(v1_state_dict(len(v1_spm('de', 'paper')[2]), window0=1), v1_dir/'lm_best.pth')
    with pytest.raises(ConversionError, match='window'): convert_multifit_v1(v1_dir, tmp_path/'pkg')

def test_out_dir_not_a_package_is_kept(tmp_path, v1_dir):
    out = tmp_path/'mine'; out.mkdir(); (out/'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError): convert_multifit_v1(v1_dir, out)
    assert (out/'notes.txt').read_text() == 'keep me'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.mine')] == []
