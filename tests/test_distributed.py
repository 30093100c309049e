"""Data-parallel training: real 2-process `torchrun` jobs on the CPU with the gloo backend, through
fastai's DistributedTrainer (HF accelerate). Tolerance: the 2-process loss curve (per-step smoothed training loss,
mean over the ranks) equals the single-process curve with the same global batch within 1e-4 relative at every step,
and the final validation loss within 1e-5 relative; dropout is off (drop_mult=0, the paper's pretraining setting)
so that both runs compute the same function."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from multifit_fastai.data import sample_data

pytest.importorskip('accelerate')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
SET = ['--lang', 'de', '--size', 'demo', '--vocab-sz', '300', '--epochs', '2', '--set', 'emb_sz=16', 'n_hid=24',
       'n_layers=2', 'bptt=16', 'seed=0', 'drop_mult=0']

def launch(*args, nproc=1):
    pre = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc > 1 else [sys.executable]
    r = subprocess.run([*pre, '-m', 'multifit_fastai.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return r

def history(exp, stage): return json.loads((Path(exp)/'history.json').read_text())[stage]

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddp')
    sd = sample_data()
    (d/'c.txt').write_text('\n'.join(sd.corpus(400)), encoding='utf-8')
    sd.train[:160].to_csv(d/'train.csv', index=False); sd.valid[:48].to_csv(d/'valid.csv', index=False)
    return d

def test_two_process_pretraining_follows_single_process(data):
    launch('pretrain', '--corpus', data/'c.txt', '--exp', data/'one', *SET, 'bs=8')
    launch('pretrain', '--corpus', data/'c.txt', '--exp', data/'two', *SET, 'bs=4', nproc=2)
    launch('pretrain', '--corpus', data/'c.txt', '--exp', data/'half', *SET, 'bs=4')
    one, two, half = (history(data/e, 'pretrain') for e in ('one', 'two', 'half'))
    assert two['processes'] == 2 and one['processes'] == 1
    assert two['steps'] == one['steps']
    assert [s for s, _ in two['loss_curve']] == [s for s, _ in one['loss_curve']]
    assert [l for _, l in two['loss_curve']] == pytest.approx([l for _, l in one['loss_curve']], rel=1e-4)
    assert two['valid_loss'] == pytest.approx(one['valid_loss'], rel=1e-5)
    # and it is not one process's batch trained twice: a single process with the per-rank batch differs
    assert half['steps'] != two['steps'] or half['loss_curve'] != two['loss_curve']
    # one package, written once (rank 0), no temporary leftovers
    pkg = data/'two'/'lm_pretrained'
    assert (pkg/'config.json').is_file() and (pkg/'model.pth').is_file()
    assert sorted(p.name for p in (data/'two').iterdir() if p.name.startswith('.')) == []

def test_two_process_classifier(data):
    exp = data/'clas'
    launch('classify', data/'train.csv', '--valid', data/'valid.csv', '--exp', exp, '--lang', 'de', '--size', 'demo',
           '--epochs', '2', '--set', 'vocab_sz=300', 'emb_sz=16', 'n_hid=24', 'n_layers=2', 'bptt=16', 'bs=8', nproc=2)
    h = history(exp, 'classifier')
    assert h['processes'] == 2 and 0 <= h['valid_accuracy'] <= 1
    assert (exp/'classifier'/'config.json').is_file()
    r = subprocess.run([sys.executable, '-m', 'multifit_fastai.cli', 'evaluate', data/'valid.csv', '--model', exp],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and 'accuracy' in r.stdout, r.stderr[-2000:]
