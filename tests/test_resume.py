"""Resumable pretraining: a `multifit pretrain --corpus` run killed (SIGKILL) in the middle of an epoch and
resumed with `--resume` ends with the same number of optimizer steps, and on the CPU the same losses, as an
uninterrupted run."""
import json, os, signal, subprocess, sys
from pathlib import Path
import pytest, torch
from multifit_fastai.data import sample_data
from multifit_fastai.checkpoint import load_checkpoint, CheckpointError

SET = ['--set', 'emb_sz=16', 'n_hid=24', 'n_layers=2', 'bptt=16', 'bs=8', 'seed=0', 'drop_mult=0.5']
ARGS = ['--lang', 'de', '--size', 'demo', '--vocab-sz', '300', '--epochs', '2', '--save-every', '7', *SET]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def cli(*args, ok=True):
    r = subprocess.run([sys.executable, '-m', 'multifit_fastai.cli', *map(str, args)], capture_output=True, text=True,
                       env=ENV, timeout=600)
    if ok: assert r.returncode == 0, r.stderr[-3000:]
    return r

# runs the same pretraining as the CLI, plus a callback that kills the process (no clean-up at all) right after the
# checkpoint of step `kill_at` is written
KILLER = '''
import os, signal, sys
from pathlib import Path
from fastai.callback.core import Callback
from multifit_fastai.cli import main
class Kill(Callback):
    order = 99
    def after_batch(self):
        if self.training and self.train_iter == {kill_at}: os.kill(os.getpid(), signal.SIGKILL)
import multifit_fastai.pipeline as P
orig = P.MultiFiT.pretrain_lm
P.MultiFiT.pretrain_lm = lambda self, *a, **kw: orig(self, *a, **{{**kw, 'cbs': [Kill()]}})
sys.exit(main(sys.argv[1:]))
'''

@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp('resume')
    (d/'c.txt').write_text('\n'.join(sample_data().corpus(300)), encoding='utf-8')
    return d

def history(exp): return json.loads((Path(exp)/'history.json').read_text())['pretrain']

def test_kill_mid_epoch_then_resume(corpus):
    full = corpus/'full'
    cli('pretrain', '--corpus', corpus/'c.txt', '--exp', full, *ARGS)
    ref = history(full)
    n_iter = ref['steps'] // 2
    kill_at = (3 * n_iter // 2) // 7 * 7  # a multiple of 7 in the middle of the second epoch: a step checkpoint is there
    assert n_iter < kill_at < 2 * n_iter, (n_iter, kill_at)
    exp = corpus/'killed'
    r = subprocess.run([sys.executable, '-c', KILLER.format(kill_at=kill_at), 'pretrain', '--corpus', corpus/'c.txt',
                        '--exp', exp, *ARGS], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    assert not (exp/'lm_pretrained').exists()
    ck = load_checkpoint(exp/'checkpoints'/'pretrain.pth')
    assert (ck['epoch'], ck['batch'], ck['train_iter']) == (1, kill_at - n_iter, kill_at)
    assert not [f for f in (exp/'checkpoints').iterdir() if f.name.endswith('.tmp')]
    # resume with other settings on the command line: the checkpoint's settings win
    cli('pretrain', '--corpus', corpus/'c.txt', '--exp', exp, '--resume', *ARGS[:-len(SET)], '--set', 'bs=8', 'seed=0')
    res = history(exp)
    assert res['steps'] == ref['steps'] == 2 * n_iter
    assert res['valid_loss'] == pytest.approx(ref['valid_loss'], rel=1e-5)
    assert [s for s, _ in res['loss_curve']] == [s for s, _ in ref['loss_curve']]
    assert [l for _, l in res['loss_curve']] == pytest.approx([l for _, l in ref['loss_curve']], rel=1e-5)
    assert not (exp/'checkpoints'/'pretrain.pth').exists()  # removed once the package is written

def test_resume_refuses_a_damaged_checkpoint(corpus, tmp_path):
    exp = tmp_path/'e'
    (exp/'checkpoints').mkdir(parents=True)
    (exp/'checkpoints'/'pretrain.pth').write_bytes(b'not a checkpoint')
    r = cli('pretrain', '--corpus', corpus/'c.txt', '--exp', exp, '--resume', *ARGS, ok=False)
    assert r.returncode == 2 and 'damaged or not a checkpoint' in r.stderr, r.stderr[-2000:]
    assert (exp/'checkpoints'/'pretrain.pth').read_bytes() == b'not a checkpoint'  # never touched

def test_resume_and_overwrite_conflict(corpus, tmp_path):
    r = cli('pretrain', '--corpus', corpus/'c.txt', '--exp', tmp_path/'e', '--resume', '--overwrite', *ARGS, ok=False)
    assert r.returncode == 2 and 'choose one' in r.stderr
