"""Benchmark: where the paper-size LM step loses time to memory allocation (not a timed test).

    .venv/bin/python bench/lm_step_alloc.py           # writes bench/results/lm_step_alloc.{json,md}
    .venv/bin/python bench/lm_step_alloc.py --quick   # smoke run on a tiny model, writes nothing unless --out

The LM step at batch 64 allocates buffers of hundreds of MB (the decoder's 4480 x 15000 logits, their log-softmax and
gradients). glibc serves blocks that large with fresh `mmap`s and unmaps them on free, so every step touches new pages:
each first touch is a page fault and the kernel zeroes the page. This script times the QRNN and the LSTM LM step
(embedding 400, hidden 1550, 4 layers, vocabulary 15000, bptt 70, Adam; CPU time, one thread) with glibc's default
behaviour and with freed memory kept in the process (`mallopt(M_MMAP_MAX, 0)` and `M_TRIM_THRESHOLD` at 1 TB), the two
switched step by step in one process (a settling step after each switch), and counts the page faults of each step.
"""
from __future__ import annotations
import argparse, ctypes, datetime as dt, platform, resource, statistics, sys, time
from pathlib import Path
import torch
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model
from multifit_fastai.models import AWD_QRNN
from machine import cpu_model, write_results
from qrnn_vs_lstm import lm_config, lm_step_fn, VOCAB

HERE = Path(__file__).parent
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4

def keep_freed_memory(libc, on: bool):
    "glibc: serve every block from the heap and never give it back (on), or its static defaults (off)"
    if on: libc.mallopt(M_MMAP_MAX, 0); libc.mallopt(M_TRIM_THRESHOLD, 1 << 40)
    else:
        libc.mallopt(M_MMAP_MAX, 65536); libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024); libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.malloc_trim(0)

def faults() -> int: return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bs', type=int, default=64); p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--quick', action='store_true'); p.add_argument('--out', type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1); torch.manual_seed(0)
    libc = ctypes.CDLL('libc.so.6')
    sizes = dict(emb_sz=32, n_hid=48, n_layers=2) if a.quick else {}
    vocab = 500 if a.quick else VOCAB
    steps = {arch.__name__: lm_step_fn(get_language_model(arch, vocab, config={**lm_config(arch), **sizes}), a.bs, 'cpu', vocab=vocab)
             for arch in (AWD_QRNN, AWD_LSTM)}
    for s in steps.values(): s()
    res = {}
    for r in range(1 if a.quick else a.rounds):
        for on in ((False, True) if r % 2 == 0 else (True, False)):
            for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                keep_freed_memory(libc, on); steps[name]()  # settle after the switch
                f0, c0 = faults(), time.process_time(); steps[name]()
                res.setdefault(f'{name}/{"kept" if on else "default"}', []).append((time.process_time() - c0, faults() - f0))
    keep_freed_memory(libc, False)
    rows = {k: dict(cpu_s=statistics.median(t for t, _ in v), faults=int(statistics.median(f for _, f in v)),
                    runs=[round(t, 3) for t, _ in v]) for k, v in res.items()}
    ratio = {m: rows[f'AWD_LSTM/{m}']['cpu_s'] / rows[f'AWD_QRNN/{m}']['cpu_s'] for m in ('default', 'kept')}
    R = dict(machine=f'{cpu_model()}, torch {torch.__version__}, Python {platform.python_version()}, 1 thread',
             date=dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'), bs=a.bs, bptt=70, quick=a.quick,
             rows=rows, lstm_over_qrnn=ratio)
    lines = [f"**Machine:** {R['machine']}; **date:** {R['date']}. LM step, batch {a.bs} x 70"
             + (' (tiny model)' if a.quick else ', embedding 400, hidden 1550, 4 layers, vocabulary 15000') + ', Adam; '
             f'median CPU time of {len(next(iter(res.values())))} steps per cell, the settings switched step by step.', '',
             '| model | glibc default: s / page faults per step | freed memory kept: s / page faults per step | kept / default |',
             '|---|---|---|---|']
    for m in steps:
        d, k = rows[f'{m}/default'], rows[f'{m}/kept']
        lines.append(f"| {m} | {d['cpu_s']:.3f} / {d['faults']:,} | {k['cpu_s']:.3f} / {k['faults']:,} | {k['cpu_s'] / d['cpu_s']:.2f} |")
    lines += ['', f"LSTM/QRNN: {ratio['default']:.2f} with glibc's default, {ratio['kept']:.2f} with freed memory kept."]
    md = '\n'.join(lines) + '\n'; print(md)
    out = a.out or (None if a.quick else HERE/'results')
    write_results(out, 'lm_step_alloc', R, md)

if __name__ == '__main__': main()
