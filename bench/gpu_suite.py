"""One prepared GPU suite (a benchmark, not a test): the fused forget-mult kernel's correctness, the paper's speed table
(Table 4: LSTM vs QRNN), LM training throughput fp32 vs bf16, and a paper-size German MultiFiT model, in one process.

    python bench/gpu_suite.py --out results/                # on any CUDA machine: ~8 minutes on one H200
    python bench/gpu_suite.py --dry-run --out /tmp/gsuite    # every part on the CPU at tiny sizes, under a minute
    bash bench/gpu_suite.sh                                  # offline install of bench/gpu_wheels, then the suite

Each part has a budget in seconds (`--budget-PART`) inside a total (`--budget`); a part past its budget is stopped, and
parts that no longer fit are skipped with the reason recorded. OUT/gpu_suite.json and OUT/gpu_suite.md
(gpu_suite_dry_run.* for --dry-run) are rewritten atomically after every finished measurement, so a crash or a timeout
keeps everything measured so far.
"""
from __future__ import annotations
import argparse, contextlib, gc, json, math, os, platform, signal, statistics, sys, tempfile, time, traceback, warnings
from datetime import datetime
from pathlib import Path
import pandas as pd, torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.text.data import LMDataLoader
from fastai.text.learner import language_model_learner
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config, awd_lstm_clas_config
from fastai.text.models.core import get_language_model, get_text_classifier
import multifit_fastai
from multifit_fastai import qrnn as qrnn_mod
from multifit_fastai.qrnn import QRNN, forget_mult
from multifit_fastai.models import AWD_QRNN, awd_qrnn_lm_config, awd_qrnn_clas_config
from multifit_fastai.learner import multifit_lm_learner
from multifit_fastai.pipeline import MultiFiT, tfidf_baseline
from multifit_fastai.core import atomic_write_json, atomic_write_text, read_lines

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from qrnn_vs_lstm import ab, lm_step_fn, clas_step_fn, DROPS  # the CPU benchmark's A/B timing and training steps

PARTS = ('correctness', 'speed', 'throughput', 'german')
# the paper's shapes (Table 4: LM batch 64 x bptt 70, classifier batch 32 x ~1400 tokens) and the dry run's tiny ones
SIZES = {'paper': dict(vocab=15000, emb=400, hid=1550, layers=4, bptt=70, lm_bs=64, clas_bs=32, clas_len=1400,
                       fm_batch=8, fm_hidden=300, max_bs=16384),
         'tiny':  dict(vocab=300, emb=16, hid=24, layers=2, bptt=10, lm_bs=4, clas_bs=2, clas_len=40,
                       fm_batch=2, fm_hidden=8, max_bs=16)}
PAPER_V100_MS = {'lm': (143, 71), 'clas': (467, 156)}  # MultiFiT Table 4: LSTM, QRNN ms per batch on a V100
TOL = {'fp32': 1e-5, 'fp16': 4e-3, 'bf16': 3e-2}         # max |error| / max(1, max |reference|) vs the float64 loop
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
MIN_PART_S, GRACE_S, CLASSIFIER_RESERVE_S = 5, 20, 70  # a part gets at least 5 s or is skipped; the hard stop comes 20 s after
# its budget; the German part keeps 70 s for its two classifiers and the TF-IDF baselines

def log(*a): print(*a, flush=True)

# ------------------------------------------------------------------------------------------------------- time boxes
class PartTimeout(Exception): "A part ran past its budget (raised by the alarm of `hard_limit`)"

@contextlib.contextmanager
def hard_limit(seconds: float):
    "Raise `PartTimeout` in the main thread after `seconds` (the next time Python code runs)"
    def ring(signum, frame): raise PartTimeout(f'stopped after {seconds:.0f} s (its budget plus {GRACE_S} s)')
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

class Deadline:
    "Seconds left of one part's budget"
    def __init__(self, seconds): self.end = time.perf_counter() + seconds
    def left(self) -> float: return self.end - time.perf_counter()
    def ok(self, need: float = 0.) -> bool: return self.left() > need

def free_memory():
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

def peak_gb(dev) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev == 'cuda' else None

@contextlib.contextmanager
def forget_mult_impl(impl: str):
    "Run QRNN layers with the 'pure' loop or the default ('auto': fused on CUDA) through MULTIFIT_FORGET_MULT"
    old = os.environ.get('MULTIFIT_FORGET_MULT')
    if impl == 'pure': os.environ['MULTIFIT_FORGET_MULT'] = 'pure'
    else: os.environ.pop('MULTIFIT_FORGET_MULT', None)
    try: yield
    finally:
        if old is None: os.environ.pop('MULTIFIT_FORGET_MULT', None)
        else: os.environ['MULTIFIT_FORGET_MULT'] = old

def under(fn, dev: str, prec: str, impl: str = 'auto'):
    "`fn` run under CUDA autocast (bf16/fp16; off on the CPU, like fastai's `MixedPrecision`) and forget-mult `impl`"
    def run():
        with forget_mult_impl(impl), torch.autocast(dev, dtype=DTYPES[prec], enabled=prec != 'fp32' and dev == 'cuda'): fn()
    return run

# ----------------------------------------------------------------------------------------------------------- results
class Suite:
    "The results of one run; `put` records a measurement and rewrites the JSON and the markdown atomically"
    def __init__(self, out: Path, stem: str, meta: dict, budget: float):
        self.json, self.md, self.budget, self.t0 = out/f'{stem}.json', out/f'{stem}.md', budget, time.perf_counter()
        self.R = dict(meta=meta, parts={}, targets=[])

    def left(self) -> float: return self.budget - (time.perf_counter() - self.t0)
    def results(self, part: str) -> dict: return self.R['parts'].get(part, {}).get('results', {})

    def put(self, part: str, key: str, value):
        self.R['parts'][part]['results'][key] = value
        self.save(); log(f'  [{part}] {key}: {json.dumps(value, default=str)[:300]}')

    def attempt(self, part: str, key: str, fn, *args):
        "Run one measurement; an error (out of memory, a kernel that fails) is recorded under `key` and the part goes on"
        try: return fn(*args)
        except PartTimeout: raise
        except Exception as e:
            log(traceback.format_exc()[-3000:])
            self.put(part, key, dict(error=f'{type(e).__name__}: {e}'[:1000], ok=False))
        finally: free_memory()

    def skip(self, part: str, what: str, reason: str):
        self.R['parts'][part].setdefault('skipped', []).append(f'{what}: {reason}')
        self.save(); log(f'  [{part}] skipped {what}: {reason}')

    def save(self):
        self.R['meta']['elapsed_s'] = round(time.perf_counter() - self.t0, 1)
        self.R['targets'] = check_targets(self.R)
        atomic_write_json(self.json, self.R)
        atomic_write_text(self.md, markdown(self.R))

def run_part(S: Suite, name: str, fn, budget: float, a):
    "Run part `name` within `budget` seconds (and what is left of the total); record its status whatever happens"
    left = S.left()
    if left < MIN_PART_S:
        S.R['parts'][name] = dict(status='skipped', reason=f'the total budget of {S.budget:.0f} s is used up ({left:.0f} s left)')
        S.save(); log(f'== {name}: skipped ({S.R["parts"][name]["reason"]})'); return
    b = left if budget is None else min(budget, left)
    P = S.R['parts'][name] = dict(status='running', budget_s=round(b), results={})
    S.save(); log(f'== {name} (budget {b:.0f} s)')
    t0 = time.perf_counter()
    try:
        with hard_limit(b + GRACE_S): fn(S, Deadline(b), a)
        P['status'] = 'done'
    except PartTimeout as e: P.update(status='timeout', reason=str(e))
    except Exception as e:
        P.update(status='failed', error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc()[-4000:])
        log(P['traceback'])
    finally:
        P['seconds'] = round(time.perf_counter() - t0, 1)
        free_memory(); S.save()
        log(f'== {name}: {P["status"]} in {P["seconds"]} s')

# ------------------------------------------------------------------------------------------------- 1. correctness
def rel_err(x, ref) -> float:
    if x is None and ref is None: return 0.
    return float((x.double() - ref.double()).abs().max() / max(1., float(ref.double().abs().max())))

def fm_inputs(dtype, T, B, H, batch_first, with_h0, dev, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, H) if batch_first else (T, B, H)
    f, z = torch.rand(shape, generator=g), torch.randn(shape, generator=g).tanh()
    h0 = (torch.randn(B, H, generator=g) * .5) if with_h0 else None
    grad = torch.randn(shape, generator=g)
    cast = lambda t: None if t is None else t.to(dtype).to(dev)
    return cast(f), cast(z), cast(h0), cast(grad)

def fm_run(f, z, h0, grad, batch_first, impl, dtype=None):
    "Values and gradients (f, z, h0) of `forget_mult`, computed in `dtype` (default: the inputs')"
    leaves = [None if t is None else t.detach().to(dtype or t.dtype).requires_grad_() for t in (f, z, h0)]
    c = forget_mult(leaves[0], leaves[1], leaves[2], batch_first=batch_first, impl=impl)
    c.backward(grad.to(c.dtype))
    return [c.detach()] + [None if t is None else t.grad for t in leaves]

def check_forget_mult(S, dl, a, Z, dtype_name):
    "Fused (pure on CPU) and pure forget-mult in one dtype against the float64 loop, every layout and length"
    dev, impl = a.device, ('fused' if a.device == 'cuda' else 'auto')
    cases, dtype = [], DTYPES[dtype_name]
    for T in (1, 70, 1400):
        for batch_first in (True, False):
            for with_h0 in (False, True):
                f, z, h0, grad = fm_inputs(dtype, T, Z['fm_batch'], Z['fm_hidden'], batch_first, with_h0, dev, seed=T + with_h0)
                ref = fm_run(f, z, h0, grad, batch_first, 'pure', torch.float64)
                case = dict(T=T, batch_first=batch_first, h0=with_h0)
                for name, im in (('fused', impl), ('pure', 'pure')):
                    got = fm_run(f, z, h0, grad, batch_first, im)
                    if got[0].dtype != dtype: raise TypeError(f'forget_mult({dtype_name}, impl={im}) returned {got[0].dtype}')
                    case[name] = {k: rel_err(g, r) for k, g, r in zip(('c', 'df', 'dz', 'dh0'), got, ref)}
                case['ok'] = all(max(case[n].values()) <= TOL[dtype_name] for n in ('fused', 'pure'))
                cases.append(case)
    worst = {n: max(max(c[n].values()) for c in cases) for n in ('fused', 'pure')}
    S.put('correctness', f'forget_mult_{dtype_name}', dict(
        impl_tested=impl if dev == 'cuda' else 'auto (the pure loop: no CUDA)', tolerance=TOL[dtype_name],
        worst_fused=worst['fused'], worst_pure=worst['pure'], cases_ok=sum(c['ok'] for c in cases), cases=len(cases),
        ok=all(c['ok'] for c in cases), failing=[c for c in cases if not c['ok']]))

def device_vs_cpu(make, inputs, dev) -> dict:
    "Outputs and parameter gradients of `make()` on `dev` against the same weights on the CPU (fp32)"
    torch.manual_seed(0)
    m, m2 = make().train(), make().train()
    m2.load_state_dict(m.state_dict())  # the same weights (fastai's weight dropout cannot be deep-copied)
    ms = {'cpu': m, dev: m2.to(dev)} if dev != 'cpu' else {'cpu': m, 'cpu copy': m2}
    res = {}
    for d, mod in ms.items():
        if hasattr(mod, 'reset'): mod.reset()
        outs = []
        for x in inputs:
            o = mod(x.to(next(mod.parameters()).device))
            outs.append(o[0] if isinstance(o, tuple) else o)
        sum(o.float().pow(2).mean() for o in outs).backward()
        res[d] = ([o.detach().cpu() for o in outs], {n: p.grad.cpu() for n, p in mod.named_parameters() if p.grad is not None})
    (o1, g1), (o2, g2) = res.values()
    return dict(devices=list(res), out=max(rel_err(x, y) for x, y in zip(o2, o1)),
                grads=max(rel_err(g2[n], g1[n]) for n in g1), n_grads=len(g1))

def check_modules(S, dl, a, Z):
    dev, tol = a.device, 1e-4
    r = device_vs_cpu(lambda: QRNN(32, 48, n_layers=2, window=[2, 1], save_prev_x=True), [torch.randn(4, 70, 32)], dev)
    S.put('correctness', 'QRNN_vs_cpu', {**r, 'tolerance': tol, 'ok': max(r['out'], r['grads']) <= tol})
    cfg = dict(emb_sz=32, n_hid=48, n_layers=2, hidden_p=0., input_p=0., embed_p=0., weight_p=0.)
    x = torch.randint(2, 100, (4, 140))
    r = device_vs_cpu(lambda: AWD_QRNN(100, **cfg), [x[:, :70], x[:, 70:]], dev)  # two chunks: the state carries over
    S.put('correctness', 'AWD_QRNN_vs_cpu', {**r, 'tolerance': tol, 'ok': max(r['out'], r['grads']) <= tol})

class StopAfter(Callback):
    "Stop fitting after `n` training batches"
    order = 99
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.training and self.train_iter >= self.n: raise CancelFitException

def synthetic_lm_dls(vocab, bs, bptt, dev, n_docs=None, doc_len=None):
    "Random token documents in fastai's `LMDataLoader` (train = valid), vocabulary `p0..`"
    n_docs, doc_len = n_docs or bs * 2, doc_len or bptt * 30
    docs = [torch.randint(9, vocab, (doc_len,)) for _ in range(n_docs)]
    dl = LMDataLoader(docs, lens=[doc_len] * n_docs, bs=bs, seq_len=bptt, device=dev)
    dls = DataLoaders(dl, dl, device=dev)
    dls.vocab = [f'p{i}' for i in range(vocab)]
    return dls

def check_learner(S, dl, a, Z, prec, impl, steps=6):
    "fastai's `language_model_learner(dls, AWD_QRNN)` for a few steps under `to_fp16()`/`to_bf16()`"
    dls = synthetic_lm_dls(500, 8, 35, a.device)
    cfg = {**awd_qrnn_lm_config, 'emb_sz': 64, 'n_hid': 96, 'n_layers': 2}
    learn = language_model_learner(dls, AWD_QRNN, config=cfg, pretrained=False)
    learn = learn.to_fp16() if prec == 'fp16' else learn.to_bf16()
    seen = set()
    hook = learn.model[0].rnns[1].register_forward_hook(lambda m, i, o: seen.add(str(o[0].dtype)))
    with warnings.catch_warnings(record=True) as w, forget_mult_impl(impl), learn.no_bar(), learn.no_logging():
        warnings.simplefilter('always', qrnn_mod.FusedForgetMultWarning)
        learn.fit(1, 1e-3, cbs=StopAfter(steps))
    hook.remove()
    losses = [float(l) for l in learn.recorder.losses]
    fused_warn = [str(x.message)[:200] for x in w if issubclass(x.category, qrnn_mod.FusedForgetMultWarning)]
    cuda = a.device == 'cuda'  # fastai's MixedPrecision autocasts on CUDA only: on the CPU the layers stay fp32
    S.put('correctness', f'lm_learner_{prec}_{impl}', dict(
        steps=len(losses), losses=[round(l, 4) for l in losses], qrnn_output_dtypes=sorted(seen), autocast_active=cuda,
        fused_fallback_warnings=fused_warn, ok=len(losses) == steps and all(math.isfinite(l) for l in losses)
        and not fused_warn and (not cuda or str(DTYPES[prec]) in seen)))

def part_correctness(S, dl, a):
    Z = SIZES[a.size]
    for dt in ('fp32', 'fp16', 'bf16'): S.attempt('correctness', f'forget_mult_{dt}', check_forget_mult, S, dl, a, Z, dt)
    S.attempt('correctness', 'modules_vs_cpu', check_modules, S, dl, a, Z)
    for prec in ('fp16', 'bf16'):
        for impl in ('auto', 'pure'): S.attempt('correctness', f'lm_learner_{prec}_{impl}', check_learner, S, dl, a, Z, prec, impl)
    S.put('correctness', 'fused_kernel', dict(built='kernels' in qrnn_mod._FUSED, build_error=repr(qrnn_mod._FUSED['error'])
                                              if 'error' in qrnn_mod._FUSED else None))

# ------------------------------------------------------------------------------------------------------- 2. speed
def model_config(arch, Z, lm: bool) -> dict:
    base = (awd_qrnn_lm_config if lm else awd_qrnn_clas_config) if arch is AWD_QRNN else (awd_lstm_lm_config if lm else awd_lstm_clas_config)
    return {**base, 'emb_sz': Z['emb'], 'n_hid': Z['hid'], 'n_layers': Z['layers'], **DROPS}

def make_model(arch, Z, task: str):
    if task == 'lm': return get_language_model(arch, Z['vocab'], config=model_config(arch, Z, True))
    return get_text_classifier(arch, Z['vocab'], 8, seq_len=Z['bptt'], config=model_config(arch, Z, False))

def ms(r: dict, n: str) -> float: return round(1000 * r[n]['wall_s'], 2)

def speed_forget_mult(S, dl, a, Z, task, T, B):
    "The forget-mult alone (forward + backward, fp32) at the LM's or the classifier's shape: fused vs pure"
    dev = a.device
    f = torch.rand(T, B, Z['hid'], device=dev, requires_grad=True); z = torch.randn(T, B, Z['hid'], device=dev, requires_grad=True)
    def fm(impl): return lambda: forget_mult(f, z, batch_first=False, impl=impl).sum().backward()
    fns = {'fused': fm('fused'), 'pure': fm('pure')} if dev == 'cuda' else {'pure': fm('pure')}
    r = ab(fns, a.reps, sync=dev == 'cuda')
    res = dict(shape=[T, B, Z['hid']], pure_ms=ms(r, 'pure'), fused_ms=ms(r, 'fused') if 'fused' in r else None)
    res['fused_over_pure'] = round(res['pure_ms'] / res['fused_ms'], 2) if res['fused_ms'] else None
    S.put('speed', f'forget_mult_{task}', res)

def speed_step(S, dl, a, Z, task, prec):
    "Training steps of fastai's AWD_LSTM (cuDNN) and our AWD_QRNN (fused and pure forget-mult), interleaved"
    dev = a.device
    def step(model):
        if task == 'lm': return lm_step_fn(model, Z['lm_bs'], dev, vocab=Z['vocab'], bptt=Z['bptt'])
        return clas_step_fn(model, Z['clas_bs'], Z['clas_len'], dev, vocab=Z['vocab'])
    torch.manual_seed(0)
    lstm, qrnn = make_model(AWD_LSTM, Z, task), make_model(AWD_QRNN, Z, task)
    fns = {'lstm': under(step(lstm), dev, prec), 'qrnn_fused': under(step(qrnn), dev, prec)}
    if dev == 'cuda': fns['qrnn_pure'] = under(step(qrnn), dev, prec, impl='pure')
    r = ab(fns, a.reps, sync=dev == 'cuda')
    res = {f'{n}_ms': ms(r, n) for n in fns}
    res['lstm_over_qrnn'] = round(res['lstm_ms'] / res['qrnn_fused_ms'], 2)
    res['fused_over_pure'] = round(res['qrnn_pure_ms'] / res['qrnn_fused_ms'], 2) if 'qrnn_pure_ms' in res else None
    shape = (Z['lm_bs'], Z['bptt']) if task == 'lm' else (Z['clas_bs'], Z['clas_len'])
    res.update(batch=list(shape), runs={n: [round(1000 * t, 2) for t in r[n]['wall_runs']] for n in fns},
               fused_used=dev == 'cuda' and 'kernels' in qrnn_mod._FUSED, autocast=prec != 'fp32' and dev == 'cuda')
    S.put('speed', f'{task}_{prec}', res)

def part_speed(S, dl, a):
    Z = SIZES[a.size]
    S.attempt('speed', 'forget_mult_lm', speed_forget_mult, S, dl, a, Z, 'lm', Z['bptt'], Z['lm_bs'])
    S.attempt('speed', 'forget_mult_clas', speed_forget_mult, S, dl, a, Z, 'clas', Z['clas_len'], Z['clas_bs'])
    for task in ('lm', 'clas'):
        for prec in ('fp32', 'bf16'):
            if not dl.ok(): S.skip('speed', f'{task}_{prec}', 'the part budget is used up'); continue
            S.attempt('speed', f'{task}_{prec}', speed_step, S, dl, a, Z, task, prec)

# -------------------------------------------------------------------------------------------------- 3. throughput
class StepTimer(Callback):
    "Time training steps after `warmup` (synchronising CUDA), stop after `steps` timed ones"
    order = 99
    def __init__(self, warmup, steps): self.warmup, self.steps, self.times = warmup, steps, []
    def _sync(self):
        if self.dls.device is not None and torch.device(self.dls.device).type == 'cuda': torch.cuda.synchronize()
    def before_batch(self):
        if self.training: self._sync(); self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        self._sync()
        if self.train_iter > self.warmup: self.times.append(time.perf_counter() - self.t0)
        if self.train_iter >= self.warmup + self.steps: raise CancelFitException

def learner_throughput(a, Z, prec, bs, warmup=3, steps=None) -> dict:
    "Tokens/s of `multifit_lm_learner` training (the pretraining preset at the suite's size) in fastai's loop"
    steps = steps or (20 if a.device == 'cuda' else 3)
    dls = synthetic_lm_dls(Z['vocab'], bs, Z['bptt'], a.device, doc_len=Z['bptt'] * (warmup + steps + 2))
    learn = multifit_lm_learner(dls, preset='pretrain', seed=0, emb_sz=Z['emb'], n_hid=Z['hid'], n_layers=Z['layers'], bptt=Z['bptt'])
    if prec == 'bf16': learn.to_bf16()
    t = StepTimer(warmup, steps)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=t)
    s = statistics.median(t.times)
    return dict(batch=[bs, Z['bptt']], sec_per_step=round(s, 4), tokens_per_s=round(bs * Z['bptt'] / s), steps=len(t.times),
                peak_gb=peak_gb(a.device))

def step_tokens_per_s(model, bs, Z, dev, prec) -> float:
    "Tokens/s of one raw LM training step at batch `bs` (after one warm-up step)"
    step = under(lm_step_fn(model, bs, dev, vocab=Z['vocab'], bptt=Z['bptt']), dev, prec)
    r = ab({'step': step}, 1, sync=dev == 'cuda')
    return round(bs * Z['bptt'] / r['step']['wall_s'])

def largest_batch(S, dl, a, Z, prec):
    "Double the LM batch from the paper's 64 until it runs out of memory, the cap, or the part's time"
    torch.manual_seed(0)
    model, dev, bs, tried, stop = make_model(AWD_QRNN, Z, 'lm'), a.device, Z['lm_bs'], {}, 'cap'
    def record():
        fits = [b for b, v in tried.items() if isinstance(v, int)]
        S.put('throughput', f'largest_batch_{prec}', dict(largest_fitting=max(fits) if fits else None, stopped_by=stop,
                                                          tokens_per_s_by_batch={str(b): v for b, v in tried.items()}, cap=Z['max_bs']))
    while bs <= Z['max_bs']:
        if not dl.ok(10): stop = 'the part budget'; break
        stop = 'running'
        try: tried[bs] = step_tokens_per_s(model, bs, Z, dev, prec)
        except RuntimeError as e:  # torch.OutOfMemoryError, or a cuBLAS/cuDNN allocation failure
            msg = f'{type(e).__name__}: {e}'
            tried[bs], stop = msg[:160], 'out of memory' if 'memory' in msg.lower() or 'ALLOC' in msg else 'an error'
        model.zero_grad(set_to_none=True); free_memory()
        if stop != 'running': break
        stop = 'cap'
        record()  # kept if a later, larger batch is cut off by the part's time limit
        bs *= 2
    record()

def part_throughput(S, dl, a):
    Z = SIZES[a.size]
    for prec in ('fp32', 'bf16'):
        key = f'learner_{prec}_bs{Z["lm_bs"]}'
        S.attempt('throughput', key, lambda: S.put('throughput', key, learner_throughput(a, Z, prec, Z['lm_bs'])))
    for prec in ('bf16', 'fp32'):
        if not dl.ok(15): S.skip('throughput', f'largest_batch_{prec}', 'the part budget is used up'); continue
        S.attempt('throughput', f'largest_batch_{prec}', largest_batch, S, dl, a, Z, prec)

# ------------------------------------------------------------------------------------------------------ 4. german
class EpochBudget(Callback):
    "Stop after the epoch past which another epoch would not fit in `seconds`"
    order = 99  # after Recorder (50) and the checkpoint (61): the epoch is recorded and saved first
    def __init__(self, seconds): self.seconds, self.stopped_after = seconds, None
    def before_fit(self): self.t0 = time.perf_counter()
    def after_epoch(self):
        el = time.perf_counter() - self.t0
        if self.epoch + 1 < self.n_epoch and el * (self.epoch + 2) / (self.epoch + 1) > self.seconds:
            self.stopped_after = self.epoch + 1; raise CancelFitException

def german_data(a) -> dict:
    "The German corpus, the in-domain unlabelled texts and the DDTP splits (subsets in a dry run)"
    need = {'corpus': a.corpus, 'unlabelled': a.ddtp/'unlabelled.csv.gz', **{s: a.ddtp/f'{s}.csv' for s in ('train', 'train_100', 'valid')}}
    missing = [str(p) for p in need.values() if not Path(p).is_file()]
    if missing: raise FileNotFoundError(f'German data not found: {missing}; pass --data DIR (holding corpora/de.txt.gz and '
                                        f'ddtp/de/) or --corpus/--ddtp, or run `bash bench/gpu_suite.sh prepare` first')
    dry = a.dry_run
    d = dict(corpus=list(read_lines(need['corpus'], max_lines=100 if dry else None)),
             unlabelled=list(pd.read_csv(need['unlabelled']).text.dropna().astype(str))[:30 if dry else None],
             **{s: pd.read_csv(need[s]) for s in ('train', 'train_100', 'valid')})
    if dry:
        tr, t100 = d['train'].sample(48, random_state=0), d['train_100'].sample(32, random_state=0)
        both = set(tr.label) & set(t100.label)  # valid labels must be known to both classifiers
        d.update(train=tr[tr.label.isin(both)], train_100=t100[t100.label.isin(both)], valid=d['valid'][d['valid'].label.isin(both)][:32])
    return d

def plan_epochs(n_tokens: int, tokens_per_s: float | None, seconds: float, most: int) -> int:
    "Epochs of `n_tokens` that fit in `seconds` at `tokens_per_s` (x1.25 for validation and overhead), 1 to `most`"
    if not tokens_per_s: return 1
    return max(1, min(most, int(seconds / (1.25 * n_tokens / tokens_per_s))))

def count_tokens(tok, texts, sample: int = 2000) -> int:
    "Tokens of `texts`, extrapolated from a sample"
    step = max(1, len(texts) // sample)
    part = texts[::step]
    return round(sum(len(t) for t in tok.encode_batch(part)) * len(texts) / len(part))

def lm_tokens_per_s(S, prec) -> float | None:
    "Tokens/s measured by the throughput part at this precision (None when it did not run)"
    r = S.results('throughput')
    return next((v['tokens_per_s'] for k, v in r.items() if k.startswith(f'learner_{prec}')), None)

def part_german(S, dl, a):
    Z, prec, t0 = SIZES[a.size], a.german_precision, time.perf_counter()
    d = german_data(a)
    work = Path(tempfile.mkdtemp(prefix='german-', dir=a.work)) if a.work else Path(tempfile.mkdtemp(prefix='gsuite-german-'))
    tiny = a.size == 'tiny'
    over = dict(emb_sz=Z['emb'], n_hid=Z['hid'], n_layers=Z['layers'], bptt=30) if tiny else {}
    lm_kw = dict(bs=32) if tiny else {}  # else the presets' batch of 50
    exp = MultiFiT(work, lang='de', size='paper', overrides=over, vocab_sz=Z['vocab'])
    lm_texts, ft_texts = d['corpus'] + d['unlabelled'], d['unlabelled'] + list(d['train'].text)
    tok = exp.train_tokenizer(lm_texts)
    n_lm, n_ft = count_tokens(tok, lm_texts), count_tokens(tok, ft_texts)
    S.put('german', 'data', dict(corpus_paragraphs=len(d['corpus']), unlabelled_texts=len(d['unlabelled']), lm_tokens=n_lm,
                                 finetune_tokens=n_ft, tokenizer_s=round(time.perf_counter() - t0, 1), work=str(work),
                                 **{f'{s}_docs': len(d[s]) for s in ('train', 'train_100', 'valid')}))
    tps, reserve = lm_tokens_per_s(S, prec), 0 if tiny else CLASSIFIER_RESERVE_S
    pre_s = 0.7 * (dl.left() - reserve)
    ep = plan_epochs(n_lm, tps, pre_s, most=1 if tiny else 10)
    guard = EpochBudget(pre_s)
    kw = dict(precision=prec) if prec != 'fp32' else {}
    exp.pretrain_lm(lm_texts, epochs=ep, cbs=[guard], **kw, **lm_kw)
    h = exp.history['pretrain']
    S.put('german', 'pretrain', dict(planned_epochs=ep, stopped_after=guard.stopped_after, budget_s=round(pre_s), precision=prec,
                                     planned_from_tokens_per_s=tps, **{k: h.get(k) for k in ('seconds', 'steps', 'valid_perplexity',
                                     'valid_accuracy', 'tokens_per_epoch')}, paper='10 epochs at bs 50, no dropout'))
    # the pipeline fine-tunes in fp32, one epoch of the last layer group first, then `ft_ep` epochs
    ft_ep = max(1, plan_epochs(n_ft, lm_tokens_per_s(S, 'fp32'), 0.8 * (dl.left() - reserve), most=1 if tiny else 21) - 1)
    exp.finetune_lm(ft_texts, valid=list(d['valid'].text), epochs=ft_ep, **lm_kw)
    h = exp.history['finetune_lm']
    S.put('german', 'finetune', dict(epochs=ft_ep, **{k: h.get(k) for k in ('seconds', 'steps', 'valid_perplexity', 'valid_accuracy')}))
    for n, split in (('1000', 'train'), ('100', 'train_100')):
        if not dl.ok(5 if tiny else 25): S.skip('german', f'classifier_{n}', 'the part budget is used up'); continue
        S.attempt('german', f'classifier_{n}', german_classifier, S, exp, n, d[split], d['valid'], dict(epochs=1) if tiny else {}, kw)

def german_classifier(S, exp, n, train, valid, epochs_kw, kw):
    "The classifier from the fine-tuned LM (the preset's recipe) on `train`, next to TF-IDF + LR on the same split"
    name = f'clas_{n}'
    exp.train_classifier(train, valid=valid, name=name, **epochs_kw, **kw)
    b, h = tfidf_baseline(train, valid), exp.history[name]
    S.put('german', f'classifier_{n}', dict(train_docs=h['train_docs'], valid_docs=h['valid_docs'], epochs=h['epochs'],
                                             seconds=h['seconds'], valid_accuracy=round(h['valid_accuracy'], 4),
                                             tfidf_lr_accuracy=round(b['accuracy'], 4), tfidf_lr_seconds=b['seconds']))

# -------------------------------------------------------------------------------------------------- targets, report
def get(R, *path):
    v = R['parts']
    for k in path: v = v.get(k) if isinstance(v, dict) else None
    return v

TARGETS = [  # (what, path under parts, bound)
    ('LM step LSTM/QRNN, fp32', ('speed', 'results', 'lm_fp32', 'lstm_over_qrnn'), 2.0),
    ('LM step LSTM/QRNN, bf16', ('speed', 'results', 'lm_bf16', 'lstm_over_qrnn'), 2.0),
    ('classifier step LSTM/QRNN, fp32', ('speed', 'results', 'clas_fp32', 'lstm_over_qrnn'), 3.0),
    ('classifier step LSTM/QRNN, bf16', ('speed', 'results', 'clas_bf16', 'lstm_over_qrnn'), 3.0),
    ('forget-mult fused/pure, LM shape', ('speed', 'results', 'forget_mult_lm', 'fused_over_pure'), 5.0),
    ('forget-mult fused/pure, classifier shape', ('speed', 'results', 'forget_mult_clas', 'fused_over_pure'), 5.0),
]

def check_targets(R) -> list:
    out = [dict(target=n, bound=f'>= {b}', measured=get(R, *p), met=None if get(R, *p) is None else get(R, *p) >= b)
           for n, p, b in TARGETS]
    oks = {k: v['ok'] for k, v in get(R, 'correctness', 'results').items() if isinstance(v, dict) and 'ok' in v} \
        if get(R, 'correctness', 'results') else {}
    out.append(dict(target='correctness checks pass', bound='all', measured=f'{sum(oks.values())}/{len(oks)}',
                    met=all(oks.values()) if oks else None))
    return out

def fmt(v, unit=''):
    return '–' if v is None else f'{v:,}{unit}' if isinstance(v, int) else f'{v:.3g}{unit}' if isinstance(v, float) else str(v)

def md_correctness(res) -> list:
    L = ['| check | result | worst error (fused / pure, or value / gradients) | tolerance |', '|---|---|---|---|']
    for k, v in res.items():
        if k.startswith('forget_mult_'):
            L.append(f"| {k} ({v['impl_tested']}) | {v['cases_ok']}/{v['cases']} {'ok' if v['ok'] else '**FAILED**'} | "
                     f"{v['worst_fused']:.1e} / {v['worst_pure']:.1e} | {v['tolerance']:.0e} |")
        elif k.endswith('_vs_cpu'):
            L.append(f"| {k} ({' vs '.join(v['devices'])}) | {'ok' if v['ok'] else '**FAILED**'} | {v['out']:.1e} / {v['grads']:.1e} | {v['tolerance']:.0e} |")
        elif k == 'fused_kernel':
            L.append(f"| fused Triton kernel | {'built' if v['built'] else 'not built'} | {v['build_error'] or ''} | |")
        elif k.startswith('lm_learner_'):
            L.append(f"| {k}: {v['steps']} steps, QRNN output {'/'.join(v['qrnn_output_dtypes'])} | {'ok' if v['ok'] else '**FAILED**'} | "
                     f"last loss {v['losses'][-1] if v['losses'] else '–'} | finite |")
    return L

def md_speed(res) -> list:
    L = ['| step | precision | LSTM ms | QRNN ms (fused) | QRNN ms (pure) | LSTM/QRNN | fused/pure | paper V100 LSTM/QRNN ms |',
         '|---|---|---|---|---|---|---|---|']
    for task, name in (('lm', 'LM'), ('clas', 'classifier')):
        for prec in ('fp32', 'bf16'):
            v = res.get(f'{task}_{prec}')
            if v: L.append(f"| {name} {v['batch'][0]} x {v['batch'][1]} | {prec} | {fmt(v['lstm_ms'])} | {fmt(v['qrnn_fused_ms'])} | "
                           f"{fmt(v.get('qrnn_pure_ms'))} | {fmt(v['lstm_over_qrnn'])} | {fmt(v['fused_over_pure'])} | "
                           f"{PAPER_V100_MS[task][0]}/{PAPER_V100_MS[task][1]} (ratio {PAPER_V100_MS[task][0] / PAPER_V100_MS[task][1]:.1f}) |")
    for task in ('lm', 'clas'):
        v = res.get(f'forget_mult_{task}')
        if v: L.append(f"\nforget-mult alone (fp32, forward + backward) at {' x '.join(map(str, v['shape']))}: fused "
                       f"{fmt(v['fused_ms'], ' ms')}, pure {fmt(v['pure_ms'], ' ms')}, fused/pure {fmt(v['fused_over_pure'])}.")
    return L

def md_throughput(res) -> list:
    L = ['| run | tokens/s | s/step | peak GPU GB |', '|---|---|---|---|']
    L += [f"| {k} | {fmt(v['tokens_per_s'])} | {fmt(v['sec_per_step'])} | {fmt(v['peak_gb'])} |" for k, v in res.items() if k.startswith('learner_')]
    for k, v in res.items():
        if k.startswith('largest_batch_'):
            L.append(f"\n{k}: {fmt(v['largest_fitting'])} (stopped by {v['stopped_by']}; tokens/s by batch: "
                     + ', '.join(f'{b}: {fmt(t)}' for b, t in v['tokens_per_s_by_batch'].items()) + ')')
    return L

def md_german(res) -> list:
    L = []
    if 'data' in res:
        v = res['data']; L.append(f"Data: {v['corpus_paragraphs']:,} corpus paragraphs + {v['unlabelled_texts']:,} unlabelled texts "
                                  f"(~{v['lm_tokens']:,} tokens); tokenizer {v['tokenizer_s']} s.")
    if 'pretrain' in res:
        v = res['pretrain']; L.append(f"Pretraining ({v['precision']}): {v['planned_epochs']} epochs planned"
                                      f"{'' if v['stopped_after'] is None else ', stopped after ' + str(v['stopped_after'])}, "
                                      f"{fmt(v['steps'])} steps in {fmt(v['seconds'])} s, valid perplexity {fmt(v['valid_perplexity'])} (paper: {v['paper']}).")
    if 'finetune' in res:
        v = res['finetune']; L.append(f"LM fine-tuning: {v['epochs']} epochs in {fmt(v['seconds'])} s, valid perplexity {fmt(v['valid_perplexity'])}.")
    rows = [(n, res[f'classifier_{n}']) for n in ('1000', '100') if f'classifier_{n}' in res]
    if rows:
        L += ['', '| labelled docs | MultiFiT valid accuracy | TF-IDF + LR | classifier s |', '|---|---|---|---|']
        L += [f"| {v['train_docs']} | {v['valid_accuracy']} | {v['tfidf_lr_accuracy']} | {v['seconds']} |" for n, v in rows]
    return L

def markdown(R) -> str:
    m = R['meta']
    L = [f"# GPU suite{' (DRY RUN: tiny sizes on the CPU; the numbers test the code, not the speed)' if m['dry_run'] else ''}", '',
         f"**Device:** {m['device']}; torch {m['torch']}, triton {m['triton']}, Python {m['python']}; {m['date']}; "
         f"multifit_fastai from {m['multifit_source']} ({m['multifit_path']}); elapsed {m.get('elapsed_s')} s of a {m['budget_s']} s budget.", '',
         '| part | status | seconds | note |', '|---|---|---|---|']
    for name in PARTS:
        P = R['parts'].get(name)
        if P is None: L.append(f'| {name} | not reached | | |'); continue
        note = P.get('reason') or P.get('error') or '; '.join(P.get('skipped', []))
        L.append(f"| {name} | {P['status']} | {P.get('seconds', '')} | {note[:200]} |")
    L += ['', '## Targets', '', '| target | bound | measured | met |', '|---|---|---|---|']
    L += [f"| {t['target']} | {t['bound']} | {fmt(t['measured'])} | {'–' if t['met'] is None else 'yes' if t['met'] else '**no**'} |"
          for t in R['targets']]
    for name, fn in (('correctness', md_correctness), ('speed', md_speed), ('throughput', md_throughput), ('german', md_german)):
        res = get(R, name, 'results') or {}
        errors = [f'- {k}: {v["error"]}' for k, v in res.items() if 'error' in v]
        res = {k: v for k, v in res.items() if 'error' not in v}
        if res or errors: L += ['', f'## {name}', ''] + fn(res) + ([''] + errors if errors else [])
    return '\n'.join(L) + '\n'

# ------------------------------------------------------------------------------------------------------------- main
def meta(a) -> dict:
    try: import triton; tv = triton.__version__
    except ImportError: tv = None
    dev = torch.cuda.get_device_name() if a.device == 'cuda' else f'CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)'
    return dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda, triton=tv, python=platform.python_version(),
                date=datetime.now().astimezone().isoformat(timespec='seconds'), dry_run=a.dry_run, size=a.size,
                budget_s=a.budget, multifit_source=os.environ.get('GPU_SUITE_SOURCE', 'the Python path'),
                multifit_path=str(Path(multifit_fastai.__file__).parent),
                args={k: str(v) for k, v in vars(a).items()})

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', type=Path, default=HERE/'results', help='folder for gpu_suite.json/.md (default bench/results)')
    p.add_argument('--dry-run', action='store_true', help='every part on the CPU at tiny sizes (under a minute)')
    p.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS), help='parts to run, in this order')
    p.add_argument('--budget', type=float, default=450, help='total seconds for all parts')
    for part, s in zip(PARTS, (60, 80, 60, None)):
        p.add_argument(f'--budget-{part}', type=float, default=s, help=f'seconds for {part} (default {s or "what is left"})')
    p.add_argument('--reps', type=int, default=10, help='timed runs per speed measurement (median; after one warm-up)')
    p.add_argument('--data', type=Path, default=HERE/'gpu_data', help='folder with corpora/de.txt.gz and ddtp/de/ (prepared by gpu_suite.sh)')
    p.add_argument('--corpus', type=Path, help='pretraining corpus (default DATA/corpora/de.txt.gz)')
    p.add_argument('--ddtp', type=Path, help='folder with train.csv, train_100.csv, valid.csv, unlabelled.csv.gz (default DATA/ddtp/de)')
    p.add_argument('--work', type=Path, default=HERE/'work'/'gpu_suite', help='scratch folder for the German models')
    p.add_argument('--german-precision', choices=('fp32', 'fp16', 'bf16'), default='bf16', help='precision of the German model')
    a = p.parse_args(argv)
    a.corpus, a.ddtp = a.corpus or a.data/'corpora'/'de.txt.gz', a.ddtp or a.data/'ddtp'/'de'
    a.device, a.size = ('cpu', 'tiny') if a.dry_run else ('cuda', 'paper')
    if a.dry_run:
        a.reps, a.german_precision = min(a.reps, 2), 'fp32'
    elif not torch.cuda.is_available(): p.error('no CUDA GPU here: run with --dry-run to exercise the suite on the CPU')
    return a

def main(argv=None):
    a = parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.work: a.work.mkdir(parents=True, exist_ok=True)
    if 'german' in a.parts and not (a.corpus.is_file() and (a.ddtp/'train.csv').is_file()):
        log(f'WARNING: no German data at {a.corpus} / {a.ddtp}: the german part will fail (pass --data DIR)')
    S = Suite(a.out, 'gpu_suite_dry_run' if a.dry_run else 'gpu_suite', meta(a), a.budget)
    S.save()
    fns = dict(correctness=part_correctness, speed=part_speed, throughput=part_throughput, german=part_german)
    for name in a.parts: run_part(S, name, fns[name], getattr(a, f'budget_{name}'), a)
    log(f'wrote {S.json} and {S.md}')
    log(S.md.read_text())
    return S.R

if __name__ == '__main__': main()
