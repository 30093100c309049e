"""bench/gpu_suite.py: its --dry-run runs every part on the CPU at tiny sizes (so the GPU suite cannot rot between the
rare GPU runs), and its time boxes keep what finished when a part fails, overruns or no longer fits."""
import json, os, subprocess, sys, time
from types import SimpleNamespace
from pathlib import Path
import pytest
from conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'bench'))
import gpu_suite as gs

def test_dry_run_every_part(tmp_path):
    has_data = (SHARED/'ddtp'/'de').is_dir()
    data = SHARED if has_data else tmp_path/'no-data'
    t0 = time.time()
    r = subprocess.run([sys.executable, str(REPO/'bench'/'gpu_suite.py'), '--dry-run', '--out', str(tmp_path), '--data', str(data),
                        '--work', str(tmp_path/'work')], capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    R = json.loads((tmp_path/'gpu_suite_dry_run.json').read_text())
    P = R['parts']
    assert R['meta']['dry_run'] and R['meta']['device'].startswith('CPU')
    for part in ('correctness', 'speed', 'throughput'): assert P[part]['status'] == 'done', P[part]
    c = P['correctness']['results']
    assert {f'forget_mult_{d}' for d in ('fp32', 'fp16', 'bf16')} <= set(c)
    assert all(c[f'forget_mult_{d}']['cases'] == 12 for d in ('fp32', 'fp16', 'bf16'))  # 3 lengths x 2 layouts x h0 or not
    assert {f'lm_learner_{p}_{i}' for p in ('fp16', 'bf16') for i in ('auto', 'pure')} <= set(c)
    assert all(v['ok'] for v in c.values() if isinstance(v, dict) and 'ok' in v)
    s = P['speed']['results']
    for k in ('lm_fp32', 'lm_bf16', 'clas_fp32', 'clas_bf16'): assert s[k]['lstm_ms'] > 0 and s[k]['qrnn_fused_ms'] > 0
    assert s['clas_fp32']['batch'] == [2, 40] and s['forget_mult_clas']['pure_ms'] > 0
    t = P['throughput']['results']
    assert t['learner_fp32_bs4']['tokens_per_s'] > 0 and t['largest_batch_bf16']['largest_fitting'] == 16  # the dry run's cap
    if has_data:
        assert P['german']['status'] == 'done', P['german']
        g = P['german']['results']
        assert g['pretrain']['steps'] > 0 and g['finetune']['valid_perplexity'] > 1
        for n in ('1000', '100'): assert 0 <= g[f'classifier_{n}']['valid_accuracy'] <= 1 and 0 <= g[f'classifier_{n}']['tfidf_lr_accuracy'] <= 1
    else: assert P['german']['status'] == 'failed' and 'German data not found' in P['german']['error']
    md = (tmp_path/'gpu_suite_dry_run.md').read_text()
    assert 'DRY RUN' in md and '| LM 4 x 10 | fp32 |' in md and '## Targets' in md
    print(f'dry run: {time.time() - t0:.0f} s wall, suite elapsed {R["meta"]["elapsed_s"]} s')

def test_parts_are_time_boxed_and_results_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(gs, 'GRACE_S', 0); monkeypatch.setattr(gs, 'MIN_PART_S', 1)
    t0 = time.time()  # a generous total budget, so a loaded machine still reaches the failing part in time
    S = gs.Suite(tmp_path, 'suite', dict(dry_run=True, device='cpu', torch='', triton=None, python='', date='',
                                         multifit_source='', multifit_path='', budget_s=12), budget=12)
    def quick(S, dl, a): S.put('correctness', 'one', dict(ok=True))
    def slow(S, dl, a):
        S.put('speed', 'first', dict(x=1))
        time.sleep(5)
    def broken(S, dl, a): raise ValueError('a bad thing')
    gs.run_part(S, 'correctness', quick, 10, None)
    gs.run_part(S, 'speed', slow, 1, None)       # stopped by the alarm after 1 s, its first result kept
    gs.run_part(S, 'throughput', broken, 10, None)
    time.sleep(max(0., 12.5 - (time.time() - t0)))
    gs.run_part(S, 'german', quick, None, None)   # less than MIN_PART_S of the 12 s total is left
    R = json.loads((tmp_path/'suite.json').read_text())
    P = R['parts']
    assert P['correctness']['status'] == 'done' and P['correctness']['results'] == {'one': {'ok': True}}
    assert P['speed']['status'] == 'timeout' and P['speed']['results'] == {'first': {'x': 1}} and P['speed']['seconds'] < 2
    assert P['throughput']['status'] == 'failed' and P['throughput']['error'] == 'ValueError: a bad thing'
    assert P['german']['status'] == 'skipped' and 'budget' in P['german']['reason']
    md = (tmp_path/'suite.md').read_text()
    assert '| speed | timeout |' in md and '| german | skipped |' in md

def test_plan_epochs():
    assert gs.plan_epochs(1_000_000, 100_000, 100, most=10) == 8   # 12.5 s an epoch with the 1.25 margin
    assert gs.plan_epochs(1_000_000, 100_000, 1000, most=10) == 10
    assert gs.plan_epochs(1_000_000, 100_000, 5, most=10) == 1     # at least one epoch
    assert gs.plan_epochs(1_000_000, None, 100, most=10) == 1      # no throughput measured

def test_epoch_budget_stops_before_an_epoch_that_would_not_fit():
    from fastai.callback.core import CancelFitException
    cb = gs.EpochBudget(seconds=10)
    cb.learn = SimpleNamespace(epoch=0, n_epoch=5)
    cb.t0 = time.perf_counter() - 4   # the first epoch took 4 s: a second one ends at ~8 s, inside the budget
    cb.after_epoch()
    cb.learn.epoch, cb.t0 = 1, cb.t0 - 4  # two epochs took 4 s each: a third one would end at ~12 s
    with pytest.raises(CancelFitException): cb.after_epoch()
    assert cb.stopped_after == 2
