"""Benchmark: `QRNNLinear`'s CPU tile size at the QRNN's own product shapes (not a timed test).

    .venv/bin/python bench/qrnn_tile.py            # writes bench/results/qrnn_tile.{json,md}
    .venv/bin/python bench/qrnn_tile.py --quick    # smoke run on shapes 8x smaller, writes nothing unless --out

For each gate product of the paper-size LM step (bptt 70, batch 16 and 64: layer 0 `800 -> 4650`, layers 1-2
`1550 -> 4650`, layer 3 `1550 -> 1200`) and of demo-size batch prediction (`32 x 70` tokens, `640 -> 1920` and
`640 -> 768`), forward + backward (training) or forward alone under inference mode (prediction) is timed with every tile
size in `--tiles` (0: one plain `F.linear`), interleaved in one process, best of `--reps` after a warm-up. The tile
size that `QRNN_CPU_TILE` picks on this machine is reported next to the fastest one.
"""
from __future__ import annotations
import argparse, datetime as dt, json, platform, time
from pathlib import Path
import torch
import multifit_fastai.qrnn as Q
from machine import cpu_model, write_results

HERE = Path(__file__).parent
TRAIN = [(16 * 70, 800, 4650), (16 * 70, 1550, 4650), (16 * 70, 1550, 1200),
         (64 * 70, 800, 4650), (64 * 70, 1550, 4650), (64 * 70, 1550, 1200)]
PREDICT = [(32 * 70, 640, 1920), (32 * 70, 640, 768)]

def gflops(shape, tile: int, train: bool, reps: int, inner: int) -> float:
    "Best GFLOP/s of `reps` timings (each `inner` calls) of one product shape at `tile`"
    n, k, m = shape
    lin, x = Q.QRNNLinear(k, m), torch.randn(n, k, requires_grad=train)
    g = torch.ones(n, m)
    def once():
        if train: lin(x).backward(g)
        else:
            with torch.inference_mode(): lin(x)
    Q.QRNN_CPU_TILE = tile
    once()
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner): once()
        best = min(best, (time.perf_counter() - t) / inner)
    return (3 if train else 1) * 2 * n * k * m / best / 1e9

def run(tiles, threads: int, reps: int, inner: int, scale: int = 1) -> list:
    torch.set_num_threads(threads)
    rows = []
    for train, shapes in ((True, TRAIN), (False, PREDICT)):
        shapes = [tuple(max(1, d // scale) for d in sh) for sh in shapes]
        for shape in shapes:
            res = {t: 0. for t in tiles}
            for r in range(reps):  # interleaved: every tile once per round, order alternating
                for t in (tiles if r % 2 == 0 else tiles[::-1]): res[t] = max(res[t], gflops(shape, t, train, 1, inner))
            rows.append(dict(threads=threads, what='fwd+bwd' if train else 'inference', shape=list(shape),
                             gflops={str(t): round(v, 1) for t, v in res.items()}))
    return rows

def markdown(R) -> str:
    tiles = R['tiles']
    head = ('| threads | product | rows x in -> out | ' + ' | '.join(f'tile {t}' if t else 'plain' for t in tiles)
            + ' | fastest | default / fastest |\n|' + '---|' * (len(tiles) + 5) + '\n')
    lines = []
    for r in R['rows']:
        g = r['gflops']; best = max(tiles, key=lambda t: g[str(t)])
        n, k, m = r['shape']
        lines.append(f"| {r['threads']} | {r['what']} | {n} x {k} -> {m} | " + ' | '.join(f"{g[str(t)]:.1f}" for t in tiles)
                     + f" | {'plain' if best == 0 else best} | {g[str(R['default_tile'])] / g[str(best)]:.2f} |")
    return (f"**Machine:** {R['machine']}; CPU capability {R['capability']}; **date:** {R['date']}.\n\n"
            f"GFLOP/s of `QRNNLinear` (best of {R['reps']} interleaved rounds of {R['inner']} calls), by tile size; "
            f"`QRNN_CPU_TILE` here defaults to {R['default_tile'] or 'plain (0)'}.\n\n" + head + '\n'.join(lines) + '\n')

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiles', type=int, nargs='+', default=[0, 256, 512, 1024])
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    p.add_argument('--reps', type=int, default=3); p.add_argument('--inner', type=int, default=3)
    p.add_argument('--quick', action='store_true'); p.add_argument('--out', type=Path, default=None)
    a = p.parse_args()
    default = Q.QRNN_CPU_TILE
    if a.quick: a.reps, a.inner, a.threads = 1, 1, [1]
    tiles = sorted(set(a.tiles) | {default})
    R = dict(machine=f'{cpu_model()}, {torch.get_num_threads()} threads available, torch {torch.__version__}, Python {platform.python_version()}',
             capability=torch.backends.cpu.get_cpu_capability(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
             tiles=tiles, default_tile=default, reps=a.reps, inner=a.inner,
             rows=[r for t in a.threads for r in run(tiles, t, a.reps, a.inner, 8 if a.quick else 1)])
    Q.QRNN_CPU_TILE = default
    md = markdown(R); print(md)
    out = a.out or (None if a.quick else HERE/'results')
    write_results(out, 'qrnn_tile', R, md)

if __name__ == '__main__': main()
