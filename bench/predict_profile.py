"""Profile of batch prediction: where the time of `package.predict` and of fastai's route goes (not a timed test).

    .venv/bin/python bench/predict_profile.py          # after bench/predict.py; writes bench/results/predict_profile.{json,md}
    .venv/bin/python bench/predict_profile.py --quick  # tiny random package, writes nothing unless --out

One thread; `--n` German DDTP descriptions (the package and texts of `bench/predict.py`), each route run once to warm
up and once under `torch.profiler` (self CPU time per operator). Next to it, the matrix-product work per token of each
route (ours: the first layer is a table look-up; fastai's: every layer is a product) and the speed of a plain product
of the main gate shape, which bound what any route can reach on this CPU without changing the maths.
"""
from __future__ import annotations
import argparse, datetime as dt, os, platform, sys, time
from pathlib import Path
import torch
from machine import cpu_model, write_results
from predict import build_package, fastai_learner, load_texts, REPO, HERE

def product_flops(cfg: dict) -> dict:
    "Multiply-add FLOPs per token of the encoder's gate products (fastai: all layers; ours: layer 0 is a look-up)"
    m = cfg['model_config']; e, h, n = m['emb_sz'], m['n_hid'], m['n_layers']
    layers = [2 * (2 * e if l == 0 else h) * 3 * (h if l < n - 1 else e) for l in range(n)]
    return dict(fastai=sum(layers), ours=sum(layers[1:]), layers=layers)

def plain_gflops(k: int, m: int, rows: int = 2240, reps: int = 5) -> float:
    x, w = torch.randn(rows, k), torch.randn(m, k)
    with torch.inference_mode():
        x @ w.T; t = time.perf_counter()
        for _ in range(reps): x @ w.T
    return 2 * rows * k * m * reps / (time.perf_counter() - t) / 1e9

def profile(fn, top: int) -> dict:
    from torch.profiler import profile as prof, ProfilerActivity
    fn()
    with prof(activities=[ProfilerActivity.CPU]) as p:
        t = time.perf_counter(); fn(); wall = time.perf_counter() - t
    ev = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return dict(wall_s=wall, ops=[dict(op=e.key, self_s=e.self_cpu_time_total / 1e6, share=e.self_cpu_time_total / total,
                                       calls=e.count) for e in ev[:top]])

def markdown(R) -> str:
    f = R['flops_per_token']
    out = [f"**Machine:** {R['machine']}; **date:** {R['date']}. {R['n']} German DDTP descriptions "
           f"({R['tokens']:,} tokens), batch 32, one thread, wall time under `torch.profiler` (its overhead included).", '',
           f"Gate-product work per token: fastai's route {f['fastai'] / 1e6:.2f} MFLOP, ours {f['ours'] / 1e6:.2f} MFLOP "
           f"(layer 0 is a look-up), a ratio of {f['fastai'] / f['ours']:.2f}. A plain `{R['plain_shape']}` product runs at "
           f"{R['plain_gflops']:.0f} GFLOP/s here.", '']
    for name, p in R['routes'].items():
        tok_s = R['tokens'] / p['wall_s']
        key = 'fastai' if name.startswith('fastai') else 'ours'
        out += [f"**{name}**: {p['wall_s']:.2f} s, {tok_s:,.0f} tokens/s, gate products at an effective "
                f"{tok_s * f[key] / 1e9:.0f} GFLOP/s of the whole run.", '', '| operator | self CPU s | share | calls |', '|---|---|---|---|']
        out += [f"| `{o['op']}` | {o['self_s']:.3f} | {100 * o['share']:.1f} % | {o['calls']} |" for o in p['ops']]
        out.append('')
    return '\n'.join(out)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=1000); p.add_argument('--top', type=int, default=10)
    p.add_argument('--data', type=Path, default=Path(os.environ.get('MULTIFIT_SHARED_DATA', REPO.parent/'shared'/'data')))
    p.add_argument('--work', type=Path, default=HERE/'work'/'predict')
    p.add_argument('--quick', action='store_true'); p.add_argument('--out', type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    from multifit_fastai.package import load_package
    from multifit_fastai.precision import cpu_has_fast_bf16, autocast_context
    if a.quick: a.n, a.work = 40, a.work.with_name('predict_quick')
    build_package(a.work, a.data, None, a.quick)
    pkg, texts = load_package(a.work/'pkg'), load_texts(a.data, a.n)
    learn = fastai_learner(a.work/'pkg', a.data)
    fastai = lambda: learn.get_preds(dl=learn.dls.test_dl(texts, bs=32, num_workers=0))
    routes = {'ours fp32': lambda: pkg.predict(texts, bs=32)}
    if cpu_has_fast_bf16(): routes['ours bf16'] = lambda: pkg.predict(texts, bs=32, precision='bf16')
    routes['fastai fp32 (test_dl + get_preds, in-process loader)'] = fastai
    cfg, h = pkg.config, pkg.config['model_config']['n_hid']
    R = dict(machine=f'{cpu_model()}, torch {torch.__version__}, Python {platform.python_version()}',
             date=dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'), n=a.n,
             tokens=int(pkg.tokenizer.encode_batch(texts).lens.sum()), flops_per_token=product_flops(cfg),
             plain_shape=f'2240 x {h} -> {3 * h}', plain_gflops=plain_gflops(h, 3 * h),
             routes={k: profile(fn, a.top) for k, fn in routes.items()})
    md = markdown(R); print(md)
    out = a.out or (None if a.quick else HERE/'results')
    write_results(out, 'predict_profile', R, md)

if __name__ == '__main__': main()
