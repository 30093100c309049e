"The `multifit` command line, run as a user would (subprocesses), on tiny models."
import os, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from multifit_fastai.data import sample_data

TINY = ['--size', 'cpu-small', '--set', 'emb_sz=16', 'n_hid=24', 'n_layers=2', 'bptt=24', 'bs=16']

def run(*args, input=None, ok=True):
    r = subprocess.run([sys.executable, '-m', 'multifit_fastai.cli', *map(str, args)], capture_output=True, text=True,
                       input=input, env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=600)
    if ok: assert r.returncode == 0, r.stderr[-3000:]
    return r

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    sd = sample_data()
    (d/'corpus.txt').write_text('\n'.join(sd.corpus(800)), encoding='utf-8')
    sd.train[:200].to_csv(d/'train.csv', index=False)
    sd.valid[:60].to_csv(d/'valid.csv', index=False)
    return d

@pytest.fixture(scope='module')
def exp(files):
    e = files/'exp'
    run('pretrain', files/'corpus.txt', '--exp', e, '--lang', 'de', '--vocab-sz', '600', '--epochs', '1', *TINY)
    run('finetune', files/'train.csv', '--exp', e, '--epochs', '1', *TINY)
    run('classify', files/'train.csv', '--valid', files/'valid.csv', '--exp', e, '--epochs', '1', *TINY)
    return e

def test_help():
    for cmd in ['tokenizer', 'pretrain', 'finetune', 'classify', 'evaluate', 'predict', 'demo']:
        r = run(cmd, '--help')
        assert 'usage: multifit ' + cmd in r.stdout

def test_full_cycle(exp, files):
    assert all((exp/d/'config.json').is_file() for d in ['lm_pretrained', 'lm_finetuned', 'classifier'])
    r = run('evaluate', files/'valid.csv', '--model', exp, '--confusion-png', files/'cm.png')
    assert 'accuracy' in r.stdout and 'macro-F1' in r.stdout and 'games' in r.stdout
    assert (files/'cm.png').read_bytes()[:4] == b'\x89PNG'
    r = run('predict', files/'valid.csv', '--model', exp/'classifier', '--out', files/'pred.csv')
    pred, inp = pd.read_csv(files/'pred.csv'), pd.read_csv(files/'valid.csv')
    n_in = len(inp.columns)
    assert list(pred.columns[:n_in + 2]) == list(inp.columns) + ['pred_label', 'pred_probability'] and len(pred) == 60
    assert ((pred.iloc[:, n_in + 2:].sum(1) - 1).abs() < 1e-4).all()
    r = run('predict', '--model', exp, input='Ein Spiel\nEin Editor für Texte\n')
    out = pd.read_csv(__import__('io').StringIO(r.stdout))
    assert list(out.text) == ['Ein Spiel', 'Ein Editor für Texte']

def test_precision(exp, files):
    "--precision auto runs everywhere (bf16 where the CPU has it natively); bf16 elsewhere is a one-line error"
    from multifit_fastai.precision import cpu_has_fast_bf16
    ref = pd.read_csv(__import__('io').StringIO(run('predict', files/'valid.csv', '--model', exp).stdout))
    out = pd.read_csv(__import__('io').StringIO(run('predict', files/'valid.csv', '--model', exp, '--precision', 'auto').stdout))
    assert (out.pred_probability - ref.pred_probability).abs().max() < 0.05
    r = run('predict', files/'valid.csv', '--model', exp, '--precision', 'bf16', ok=cpu_has_fast_bf16())
    if not cpu_has_fast_bf16():
        assert r.returncode == 2 and 'native bf16' in r.stderr.strip().splitlines()[-1] and 'Traceback' not in r.stderr
    assert '--precision' in run('finetune', '--help').stdout and '--precision' in run('demo', '--help').stdout

@pytest.mark.parametrize('args,msg', [
    (['classify', '{d}/train.csv', '--exp', '{d}/e2', '--label-col', 'topic'], "no label column 'topic'"),
    (['classify', '{d}/empty.csv', '--exp', '{d}/e2'], 'is empty'),
    (['pretrain', '{d}/nope.txt', '--exp', '{d}/e2'], 'corpus file not found'),
    (['evaluate', '{d}/valid.csv', '--model', '{d}/nope'], 'model not found'),
    (['evaluate', '{d}/valid.csv', '--model', '{d}'], 'is not a model directory'),
    (['predict', '{d}/valid.csv', '--model', '{d}/exp', '--text-col', 'body'], "no column(s) ['body']"),
    (['evaluate', '{d}/bad_labels.csv', '--model', '{d}/exp'], "['sports']"),
    (['pretrain', '{d}/blank.txt', '--exp', '{d}/e3'], 'no text'),
])
def test_bad_input_one_line_errors(exp, files, args, msg):
    (files/'empty.csv').write_text('')
    (files/'blank.txt').write_text('\n  \n')
    bad = pd.read_csv(files/'valid.csv'); bad.loc[0, 'label'] = 'sports'; bad.to_csv(files/'bad_labels.csv', index=False)
    r = run(*[a.format(d=files) for a in args], ok=False)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('multifit: error:') and msg in last, r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
