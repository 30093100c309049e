"""bf16 vs fp32 on this CPU (not a test): LM training tokens/s and perplexity after the same budget.

1. Speed: the AWD_QRNN language model's training step (forward, backward, optimizer) at the demo size
   (256/640/3 layers, vocab 8k) and the paper size (400/1550/4 layers, vocab 15k), batch 32 x bptt 70, with 1 and 2
   torch threads, fp32 and bf16 (`CPUBFloat16`, forced with allow_slow so it runs on any CPU; its default decoder mode
   'fp32_logits', and 'fp32', the whole decoder in fp32), interleaved in one process so the ratios are measured under
   the same conditions; median of --steps timed steps after warm-up.
2. Quality: the demo-size LM trained for --budget-steps on the embedded German sample corpus in fp32 and in bf16
   (both decoder modes) from the same initialisation and batches; validation perplexity of each.
Also a bf16 matrix product at the LM step's gate shape, to show whether the CPU has native bf16.

Run:  .venv/bin/python bench/cpu_bf16.py [--steps 5] [--budget-steps 150]
Writes bench/results/cpu_bf16.json and .md.
"""
import argparse, json, os, platform, statistics, time
from datetime import date
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.text.data import LMDataLoader
from multifit_fastai.core import atomic_write_json, atomic_write_text
from multifit_fastai.presets import SIZES
from multifit_fastai.learner import multifit_lm_learner, text_dataloaders
from multifit_fastai.precision import set_precision, cpu_has_fast_bf16, cpu_bf16_flags, CPUBFloat16

PRECISIONS = {'fp32': None, 'bf16': 'fp32_logits', 'bf16_fp32_decoder': 'fp32'}  # name: CPUBFloat16's decoder mode

def apply_precision(learn, p: str):
    "`learn` in precision `p` of `PRECISIONS` (bf16 forced on any CPU)"
    if PRECISIONS[p] is not None: set_precision(learn, 'fp32').add_cb(CPUBFloat16(decoder=PRECISIONS[p]))
    return learn

HERE = Path(__file__).resolve().parent

class StepTimer(Callback):
    "Time `steps` optimizer steps after `warmup`, then stop the fit"
    order = 99
    def __init__(self, warmup, steps): self.warmup, self.steps, self.times = warmup, steps, []
    def before_batch(self):
        if self.training: self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        if self.train_iter > self.warmup: self.times.append(time.perf_counter() - self.t0)
        if self.train_iter >= self.warmup + self.steps: raise CancelFitException

def synthetic_dls(vocab_sz, bs, bptt=70):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(9, vocab_sz, (4000,), generator=g) for _ in range(bs)]
    dl = LMDataLoader(docs, lens=[4000] * bs, bs=bs, seq_len=bptt)
    dls = DataLoaders(dl, dl); dls.vocab = [f'p{i}' for i in range(vocab_sz)]
    return dls

def step_time(size, precision, threads, bs, warmup, steps):
    torch.set_num_threads(threads)
    dims = SIZES[size]
    learn = multifit_lm_learner(synthetic_dls(dims['vocab_sz'], bs), preset='pretrain', size=size, seed=0, bs=bs)
    apply_precision(learn, precision)
    t = StepTimer(warmup, steps)
    learn.fit(1, 1e-3, cbs=t)
    return statistics.median(t.times)

def matmul_gflops(dtype, threads, n=5):
    torch.set_num_threads(threads)
    a, b = torch.randn(2240, 800).to(dtype), torch.randn(4650, 800).to(dtype)
    for _ in range(2): a @ b.T
    t0 = time.perf_counter()
    for _ in range(n): a @ b.T
    return round(2 * 2240 * 800 * 4650 / ((time.perf_counter() - t0) / n) / 1e9, 1)

def quality(precision, budget_steps, threads, seed=0):
    "Validation perplexity of the demo LM after `budget_steps` on the embedded corpus (same init and batches)"
    import pandas as pd, random, numpy as np
    from multifit_fastai.data import sample_data
    from multifit_fastai.tokenizer import SPTokenizer
    torch.set_num_threads(threads)
    sd = sample_data()
    texts = sd.corpus()
    tok = SPTokenizer.train(texts, lang='de', vocab_sz=8000)
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
    dls = text_dataloaders(tok, pd.DataFrame({'text': texts[:-300]}), pd.DataFrame({'text': texts[-300:]}), bs=32, seq_len=70)
    learn = multifit_lm_learner(dls, preset='pretrain', size='demo', seed=seed, bs=32)
    apply_precision(learn, precision)
    n_epochs = max(1, -(-budget_steps // len(dls.train)))
    t0 = time.time()
    learn.fit_one_cycle(n_epochs, 5e-3)
    loss = float(learn.validate()[0])
    return dict(steps=n_epochs * len(dls.train), epochs=n_epochs,
                valid_perplexity=round(float(torch.exp(torch.tensor(loss))), 2), seconds=round(time.time() - t0, 1))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=5); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--bs', type=int, default=32); ap.add_argument('--budget-steps', type=int, default=150)
    ap.add_argument('--sizes', nargs='+', default=['demo', 'paper']); ap.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    ap.add_argument('--skip-quality', action='store_true')
    ap.add_argument('--skip-speed', action='store_true', help='keep the speed results already in --out')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2], help='seeds of the quality runs (init and batches)')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    res = dict(machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, '
                       f'CPU capability {torch.backends.cpu.get_cpu_capability()}',
               date=str(date.today()), bf16_flags=sorted(cpu_bf16_flags()), native_bf16=cpu_has_fast_bf16(),
               shape=f'LM step, batch {a.bs} x bptt 70', matmul={}, speed={}, quality={})
    def save():
        atomic_write_json(a.out/'cpu_bf16.json', res); atomic_write_text(a.out/'cpu_bf16.md', md(res))
    measure_speed = not (a.skip_speed and (a.out/'cpu_bf16.json').is_file())
    if measure_speed: res['speed_date'] = res['date']
    else:
        old = json.loads((a.out/'cpu_bf16.json').read_text())
        res.update(matmul=old['matmul'], speed=old['speed'], speed_date=old.get('speed_date', old['date']))
    for th in (a.threads if measure_speed else []):
        res['matmul'][f'{th} thread(s)'] = {str(dt).split('.')[-1]: matmul_gflops(dt, th) for dt in (torch.float32, torch.bfloat16)}
    save()
    for size in (a.sizes if measure_speed else []):
        for th in a.threads:
            t = {p: step_time(size, p, th, a.bs, a.warmup, a.steps) for p in PRECISIONS}
            tokens = a.bs * 70
            res['speed'][f'{size}, {th} thread(s)'] = {**{f'{p}_s': round(v, 3) for p, v in t.items()},
                **{f'{p}_tokens_s': round(tokens / v) for p, v in t.items()},
                **{f'{p}_speedup': round(t['fp32'] / v, 2) for p, v in t.items() if p != 'fp32'}}
            save(); print(res['speed'], flush=True)
    if not a.skip_quality:
        for seed in a.seeds:
            for p in PRECISIONS:  # the precisions from the same init and batches, seed by seed
                res['quality'].setdefault(p, {})[str(seed)] = quality(p, a.budget_steps, max(a.threads), seed); save()
                print(p, seed, res['quality'][p][str(seed)], flush=True)
        q = res['quality']
        m = {p: statistics.mean(v['valid_perplexity'] for v in q[p].values()) for p in PRECISIONS}
        for p in PRECISIONS:
            if p != 'fp32': q[f'{p}_vs_fp32_perplexity'] = round(m[p] / m['fp32'] - 1, 4)
    save()
    print(md(res))

def md(r):
    rows = [f"bf16 vs fp32 on the CPU. {r['machine']}, {r['date']}. CPU bf16 flags: {r['bf16_flags'] or 'none'}; "
            f"native bf16 (oneDNN and flags): {r['native_bf16']}.", '',
            '| matrix product 2240 x 800 x 4650 | fp32 GFLOP/s | bf16 GFLOP/s |', '|---|---|---|']
    rows += [f"| {k} | {v['float32']} | {v['bfloat16']} |" for k, v in r['matmul'].items()]
    ps = [p for p in PRECISIONS if any(f'{p}_s' in v for v in r['speed'].values())]
    rows += ['', f"| {r['shape']} | " + ' | '.join(f'{p} s/step' for p in ps) + ' | ' + ' | '.join(f'{p} tokens/s' for p in ps) + ' | '
             + ' | '.join(f'{p} speed-up' for p in ps if p != 'fp32') + ' |', '|---|' + '---|' * (3 * len(ps) - 1)]
    rows += [f"| {k} | " + ' | '.join(str(v.get(f'{p}_s', '')) for p in ps) + ' | ' + ' | '.join(str(v.get(f'{p}_tokens_s', '')) for p in ps)
             + ' | ' + ' | '.join(f"{v[f'{p}_speedup']}x" if f'{p}_speedup' in v else '' for p in ps if p != 'fp32') + ' |' for k, v in r['speed'].items()]
    rows += ['', "bf16: `CPUBFloat16()` (the LM decoder's logits in fp32, its backward products in bf16); bf16_fp32_decoder: "
             "`CPUBFloat16(decoder='fp32')` (the whole decoder in fp32)."]
    q = r.get('quality', {})
    if 'fp32' in q and 'bf16' in q:
        def ms(p, k):
            v = [x[k] for x in q[p].values()]
            return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.:.2f}"
        first = next(iter(q['fp32'].values()))
        steps = f"({first['steps']} steps) " if first.get('steps') else ''
        rows += ['', f"Demo LM (emb 256, hidden 640, 3 layers, vocab 8k, batch 32 x bptt 70), {first['epochs']} epoch(s) "
                 f"{steps}on the embedded corpus, every precision from the same init and batches, seeds "
                 f"{', '.join(q['fp32'])}:", '',
                 '| precision | validation perplexity (mean ± sd) | per seed | seconds (mean ± sd) |', '|---|---|---|---|']
        qs = [p for p in PRECISIONS if p in q]
        rows += [f"| {p} | {ms(p, 'valid_perplexity')} | {' / '.join(str(x['valid_perplexity']) for x in q[p].values())} | "
                 f"{ms(p, 'seconds')} |" for p in qs]
        rows += [''] + [f"{p} vs fp32 mean perplexity: {100 * q[f'{p}_vs_fp32_perplexity']:+.1f} %." for p in qs if f'{p}_vs_fp32_perplexity' in q]
    return '\n'.join(rows) + '\n'

if __name__ == '__main__': main()
