"""Bad input never loses data, hangs or ends in a traceback: each case gets exit code 2 and one `multifit: error:` line
naming the problem, leaves every input file unchanged, and (where it could hang or waste a training run) fails fast."""
import contextlib, hashlib, io, json, os, stat, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from conftest import SHARED
from multifit_fastai.core import MultiFiTError, atomic_write_json, atomic_write_text
from multifit_fastai.data import sample_data
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.presets import multifit_preset
from multifit_fastai.package import load_package, PackageError, _sha256
from multifit_fastai.learner import text_dataloaders, multifit_classifier_learner, save_pretrained
from multifit_fastai.data import read_table
from multifit_fastai.pipeline import read_texts
from multifit_fastai import cli

TINY = dict(size='cpu-small', emb_sz=16, n_hid=24, n_layers=2, bptt=16, max_len=64, seed=0)

def sha(p) -> str: return hashlib.sha256(Path(p).read_bytes()).hexdigest()

def sums(d) -> dict:
    "Checksums of every regular file under `d`"
    return {str(p): sha(p) for p in sorted(Path(d).rglob('*')) if p.is_file() and not p.is_symlink()}

def run_main(*args, stdin: bytes | None = None):
    "`multifit ARGS` in this process: (exit code, stderr); an exception other than bad input propagates (a bug)"
    err, old = io.StringIO(), sys.stdin
    if stdin is not None: sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding='utf-8', errors='surrogateescape')
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try: rc = cli.main([str(a) for a in args])
            except SystemExit as e: rc = e.code
    finally: sys.stdin = old
    return rc, err.getvalue()

def run_sub(*args, timeout=120):
    "`multifit ARGS` as a user runs it (a subprocess)"
    return subprocess.run([sys.executable, '-m', 'multifit_fastai.cli', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=timeout)

def assert_bad(rc, err, *msgs):
    assert rc == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('multifit: error:'), err[-2000:]
    assert 'Traceback' not in err
    for m in msgs: assert m in lines[0], lines[0]

@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    "A tiny (untrained) classifier package and a few input files"
    d = tmp_path_factory.mktemp('bad')
    sd = sample_data()
    tok = SPTokenizer.train(sd.corpus(600), lang='de', vocab_sz=300)
    dls = text_dataloaders(tok, sd.train[:64], sd.valid[:16], label_col='label', bs=16, seq_len=16, max_len=TINY['max_len'])
    save_pretrained(multifit_classifier_learner(dls, **TINY), d/'clf')
    sd.valid[:20].to_csv(d/'valid.csv', index=False)
    (d/'corpus.txt').write_text('\n'.join(sd.corpus(200)), encoding='utf-8')
    return d

def copy_pkg(ws, name):
    import shutil
    dst = ws/name
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(ws/'clf', dst)
    return dst

# 1. an output path that is an input
def test_out_is_input(ws):
    before = sums(ws)
    assert_bad(*run_main('predict', ws/'valid.csv', '--model', ws/'clf', '--out', ws/'valid.csv'), 'would replace the input')
    os.symlink(ws/'valid.csv', ws/'link.csv')
    try: assert_bad(*run_main('predict', ws/'link.csv', '--model', ws/'clf', '--out', ws/'valid.csv'), 'would replace the input')
    finally: os.unlink(ws/'link.csv')
    assert sums(ws) == before

# 2. prediction columns never collide, input columns are kept
def test_predict_columns(ws):
    before = sums(ws)
    rc, err = run_main('predict', ws/'valid.csv', '--model', ws/'clf', '--out', ws/'pred.csv')
    assert rc == 0, err
    pred, inp = pd.read_csv(ws/'pred.csv'), pd.read_csv(ws/'valid.csv')
    labels = load_package(ws/'clf').labels
    assert list(pred.columns) == list(inp.columns) + ['pred_label', 'pred_probability'] + [f'p_{l}' for l in labels]
    assert pred[list(inp.columns)].equals(inp) and pred.columns.is_unique
    np.testing.assert_allclose(pred[[f'p_{l}' for l in labels]].sum(1), 1, atol=1e-4)
    os.unlink(ws/'pred.csv')
    assert sums(ws) == before
    p = cli.prediction_columns(pd.DataFrame({'label': ['text'], 'probability': [1.], 'text': [1.]}), ['text', 'p_text'])
    assert list(p.columns) == ['pred_label', 'pred_probability', 'p_text_']

# 3. a long document costs at most max_len tokens of model time, in predict, evaluate and the training loaders
def test_long_document_is_bounded(ws, monkeypatch):
    import multifit_fastai.package as P
    sd = sample_data()
    doc = ' '.join(sd.corpus(3000))  # one line of ~0.4 MB
    doc = (doc + ' ') * max(1, 2_000_000 // len(doc))
    pkg = load_package(ws/'clf')
    seen, pooled = [], P._pooled
    def spy(enc, x, *args, **kwargs): seen.append(x.shape[1]); return pooled(enc, x, *args, **kwargs)
    monkeypatch.setattr(P, '_pooled', spy)  # every batch the encoder reads goes through `_pooled`
    t0 = time.time()
    p = pkg.predict([doc, 'kurz'])
    assert time.time() - t0 < 60 and len(p) == 2
    assert max(seen) <= pkg.config['max_len'] == TINY['max_len']
    ids = pkg.tokenizer.encode_batch([doc])[0]
    assert len(ids) > 100 * TINY['max_len']  # the document really is long
    # the end is kept: the prediction is that of the document's last max_len tokens
    from multifit_fastai.package import predict_texts
    tail = pkg.tokenizer.decode_ids(ids[-TINY['max_len']:])
    assert predict_texts(pkg._model, pkg.tokenizer, [doc], pkg.labels, max_len=TINY['max_len']).iloc[0, 1] == \
           pytest.approx(p.iloc[0, 1])
    dls = text_dataloaders(pkg.tokenizer, pd.DataFrame({'text': [doc] * 4, 'label': ['a', 'b'] * 2}),
                           pd.DataFrame({'text': ['x'], 'label': ['a']}), label_col='label', bs=4, seq_len=16, max_len=64)
    assert dls.train.one_batch()[0].shape[1] == 64
    pd.DataFrame({'text': [doc], 'label': [pkg.labels[0]]}).to_csv(ws/'long.csv', index=False)
    r = run_sub('evaluate', ws/'long.csv', '--model', ws/'clf', timeout=120)
    assert r.returncode == 0 and 'accuracy' in r.stdout, r.stderr[-2000:]
    os.unlink(ws/'long.csv')

# 4. a config.json that does not fit model.pth
def test_config_does_not_fit_weights(ws):
    for what, edit, msg in [('n_hid', lambda c: c['model_config'].update(n_hid=32), 'weight_raw: shape [72, 32] in model.pth, [96, 32] from config.json'),
                            ('n_class', lambda c: c.update(n_class=3, labels=['a', 'b', 'c']), 'from config.json'),
                            ('type', lambda c: c['model_config'].update(n_layers='2'), "model_config.n_layers '2'")]:
        pkg = copy_pkg(ws, f'fit_{what}')
        c = json.loads((pkg/'config.json').read_text()); edit(c); atomic_write_json(pkg/'config.json', c)
        before = sums(pkg)
        assert_bad(*run_main('evaluate', ws/'valid.csv', '--model', pkg), msg)
        assert sums(pkg) == before
    pkg = copy_pkg(ws, 'fit_keys')  # renamed keys, checksum updated: every key named
    sd = torch.load(pkg/'model.pth', weights_only=True)
    sd = {k.replace('0.module.encoder.weight', '0.module.embedding.weight'): v for k, v in sd.items()}
    torch.save(sd, pkg/'model.pth')
    c = json.loads((pkg/'config.json').read_text())
    c.update(model_sha256=_sha256(pkg/'model.pth'), model_bytes=(pkg/'model.pth').stat().st_size); atomic_write_json(pkg/'config.json', c)
    with pytest.raises(PackageError, match=r'0\.module\.encoder\.weight: missing; 0\.module\.embedding\.weight: not in the model'):
        load_package(pkg)

# 5. package files that are links out of the package or not regular files
def test_package_links_and_devices(ws):
    pkg = copy_pkg(ws, 'linked')
    os.unlink(pkg/'model.pth'); os.symlink('/dev/zero', pkg/'model.pth')
    t0 = time.time()
    r = run_sub('predict', ws/'valid.csv', '--model', pkg, timeout=60)
    assert_bad(r.returncode, r.stderr, 'outside the package')
    assert time.time() - t0 < 60
    os.unlink(pkg/'model.pth'); os.symlink(ws/'clf'/'model.pth', pkg/'model.pth')  # a real model, but elsewhere
    with pytest.raises(PackageError, match='outside the package'): load_package(pkg)
    os.unlink(pkg/'model.pth'); os.mkfifo(pkg/'model.pth')  # would block a reader forever
    with pytest.raises(PackageError, match='not a regular file'): load_package(pkg)
    pkg = copy_pkg(ws, 'grown')
    with open(pkg/'model.pth', 'ab') as f: f.write(b'\0' * 10)
    with pytest.raises(PackageError, match='config.json records'): load_package(pkg)

# 6. output paths that cannot be written are refused before any work
@pytest.mark.parametrize('case', ['exp_below_file', 'exp_in_sys', 'out_is_dir', 'png_is_dir', 'classifier_is_file', 'foreign_dir'])
def test_unwritable_outputs(ws, case, tmp_path):
    before = sums(ws)
    t0 = time.time()
    if case == 'exp_below_file': r = run_main('pretrain', ws/'corpus.txt', '--exp', ws/'corpus.txt'/'exp'); msg = 'is a file, not a folder'
    elif case == 'exp_in_sys': r = run_main('pretrain', ws/'corpus.txt', '--exp', '/sys/multifit_exp'); msg = 'cannot write the experiment folder'
    elif case == 'out_is_dir': r = run_main('predict', ws/'valid.csv', '--model', ws/'clf', '--out', tmp_path); msg = 'is a folder: give a file name'
    elif case == 'png_is_dir': r = run_main('evaluate', ws/'valid.csv', '--model', ws/'clf', '--confusion-png', tmp_path); msg = 'is a folder'
    else:
        (tmp_path/'exp').mkdir()
        if case == 'classifier_is_file': (tmp_path/'exp'/'classifier').write_text('mine')
        else: (tmp_path/'exp'/'classifier').mkdir(); (tmp_path/'exp'/'classifier'/'notes.txt').write_text('mine')
        r = run_main('classify', ws/'valid.csv', '--exp', tmp_path/'exp', '--epochs', '1'); msg = 'choose another'
        assert not (tmp_path/'exp'/'tokenizer').exists()
    assert_bad(*r, msg)
    assert time.time() - t0 < 30 and sums(ws) == before

# 7. invalid settings are refused when the preset is built, naming the field
@pytest.mark.parametrize('args,msg', [(['--epochs', '0'], 'argument --epochs: must be at least 1, got 0'),
                                      (['--set', 'bs=0'], "preset field 'bs' must be an integer >= 1, got 0"),
                                      (['--set', 'epochs=abc'], "preset field 'epochs' must be an integer, got 'abc'"),
                                      (['--set', 'lr=-1'], "preset field 'lr' must be a number > 0"),
                                      (['--set', 'nhid=3'], "unknown preset field(s) ['nhid']"),
                                      (['--size', 'huge'], "unknown --size 'huge'")])
def test_invalid_settings(ws, tmp_path, args, msg):
    assert_bad(*run_main('pretrain', ws/'corpus.txt', '--exp', tmp_path/'e', *args), msg)
    assert not (tmp_path/'e'/'tokenizer').exists()
    with pytest.raises(MultiFiTError, match="'bs'"): multifit_preset('classifier', bs=0)

# 8. messages name the file, the row and a fix a command-line user can apply
def test_messages_name_file_and_row(ws, tmp_path):
    (tmp_path/'latin1.csv').write_bytes('text,label\nok,games\nK\xe4se,games\n'.encode('latin-1'))
    assert_bad(*run_main('evaluate', tmp_path/'latin1.csv', '--model', ws/'clf'), 'latin1.csv is not valid UTF-8', 'line 3', 'iconv')
    (tmp_path/'holes.csv').write_text('text,label\nein Spiel,games\n,games\nnoch eins,\n')
    assert_bad(*run_main('evaluate', tmp_path/'holes.csv', '--model', ws/'clf'), 'holes.csv', 'without text', 'row 2')
    (tmp_path/'nolabel.csv').write_text('text,label\nein Spiel,games\nnoch eins,\n')
    assert_bad(*run_main('evaluate', tmp_path/'nolabel.csv', '--model', ws/'clf'), 'without a label', 'row 2')
    assert_bad(*run_main('evaluate', tmp_path, '--model', ws/'clf'), 'is a folder, not a file')
    rc, err = run_main('predict', '--model', ws/'clf', stdin=b'gut\nK\xe4se\n')
    assert_bad(rc, err, 'stdin is not valid UTF-8', 'line 2', 'iconv')
    assert "errors='replace'" not in err
    assert_bad(*run_main('predict', '--model', ws/'clf', stdin=b'\n \n'), 'stdin was empty', 'give a CSV file')

# 9. killed writes leave nothing behind for long; outputs follow the umask and keep an existing file's mode
def test_stale_temps_and_modes(ws, tmp_path):
    import shutil
    stale = tmp_path/'.pkg.tmp-999999999-abcd'
    stale.mkdir(); (stale/'model.pth').write_bytes(b'\0' * 1000)
    alive = tmp_path/f'.pkg.tmp-{os.getpid()}-efgh'; alive.mkdir()  # a live writer's: kept
    pkg = load_package(ws/'clf')
    from multifit_fastai.package import write_package
    write_package(pkg.model(), pkg.tokenizer, pkg.preset, tmp_path/'pkg', labels=pkg.labels)
    assert not stale.exists() and alive.exists()
    load_package(tmp_path/'pkg')
    old = os.umask(0o027)
    try:
        rc, err = run_main('predict', ws/'valid.csv', '--model', ws/'clf', '--out', tmp_path/'p.csv')
        assert rc == 0, err
        assert stat.S_IMODE((tmp_path/'p.csv').stat().st_mode) == 0o640
        os.chmod(tmp_path/'p.csv', 0o604)
        assert run_main('predict', ws/'valid.csv', '--model', ws/'clf', '--out', tmp_path/'p.csv')[0] == 0
        assert stat.S_IMODE((tmp_path/'p.csv').stat().st_mode) == 0o604
        write_package(pkg.model(), pkg.tokenizer, pkg.preset, tmp_path/'pkg2', labels=pkg.labels)
        assert stat.S_IMODE((tmp_path/'pkg2').stat().st_mode) == 0o750
        assert stat.S_IMODE((tmp_path/'pkg2'/'config.json').stat().st_mode) == 0o640
    finally: os.umask(old)

# compressed CSVs are tables: the DDTP unlabelled file and a generated one
def test_read_texts_compressed_csv(tmp_path):
    docs = ['Titel\nZweite Zeile, mit "Anführung"', 'ein\nzwei\ndrei']
    pd.DataFrame({'text': docs}).to_csv(tmp_path/'u.csv.gz', index=False)
    assert read_texts(tmp_path/'u.csv.gz') == docs
    f = SHARED/'ddtp'/'de'/'unlabelled.csv.gz'
    if not f.is_file(): pytest.skip(f'development data not found at {SHARED}')
    texts = read_texts(f)
    ref = pd.read_csv(f).text
    assert texts == [t for t in ref if isinstance(t, str) and t.strip()] and len(texts) > 8000
    assert not any(t == 'text' for t in texts) and sum('\n' in t for t in texts) > len(texts) // 2

# 10. long runs keep memory flat: the learner returns freed heap pages and stores per-step losses as floats
def test_memory_stays_flat_mechanism(ws):
    from multifit_fastai.learner import ReleaseMemory, multifit_lm_learner
    from multifit_fastai.core import release_memory
    sd = sample_data()
    tok = load_package(ws/'clf').tokenizer
    dls = text_dataloaders(tok, pd.DataFrame({'text': sd.corpus(300)}), pd.DataFrame({'text': sd.corpus(20)}), bs=8, seq_len=16)
    learn = multifit_lm_learner(dls, 'pretrain', **{k: v for k, v in TINY.items() if k != 'max_len'})
    assert any(isinstance(c, ReleaseMemory) for c in learn.cbs)
    learn.cbs.filter(lambda c: isinstance(c, ReleaseMemory))[0].every = 5
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-3)
    assert len(learn.recorder.losses) == learn.train_iter > 5
    assert all(type(l) is float for l in learn.recorder.losses)
    assert release_memory() == sys.platform.startswith('linux')
