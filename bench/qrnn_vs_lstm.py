"""Benchmark: MultiFiT's AWD_QRNN against fastai's AWD_LSTM at identical sizes (not a timed test).

    .venv/bin/python bench/qrnn_vs_lstm.py            # full run, writes bench/results/qrnn_vs_lstm.{json,md}
    .venv/bin/python bench/qrnn_vs_lstm.py --quick    # smoke run (tiny repetitions), writes nothing unless --out

Sizes: embedding 400, hidden 1550, 4 layers, vocabulary 15000, bptt 70 (MultiFiT). Every measurement interleaves the two
models (A/B, B/A alternating) in one process and reports the median of `--reps` runs after one warm-up run each. The
primary figure is process CPU time with `torch.set_num_threads(1)` (the machine is shared and noisy: CPU time is far less
sensitive to other load than wall time); wall time is reported too. On a GPU (when one is present) the fused and the pure
ForgetMult and the two models at the paper's batch sizes are compared as well, by CUDA-synchronised wall time.
"""
from __future__ import annotations
import argparse, datetime as dt, os, platform, statistics, sys, time
from pathlib import Path
import torch, torch.nn.functional as F
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config, awd_lstm_clas_config
from fastai.text.models.core import get_language_model, get_text_classifier
import multifit_fastai.qrnn as qrnn_mod
from multifit_fastai.qrnn import forget_mult
from machine import cpu_model, write_results
from multifit_fastai.models import AWD_QRNN, awd_qrnn_lm_config, awd_qrnn_clas_config

VOCAB, EMB, HID, LAYERS, BPTT = 15000, 400, 1550, 4, 70
SIZES = dict(emb_sz=EMB, n_hid=HID, n_layers=LAYERS)
DROPS = {k: v for k, v in awd_qrnn_lm_config.items() if k.endswith('_p')}  # same dropouts for both models

def lm_config(arch):
    base = awd_qrnn_lm_config if arch is AWD_QRNN else awd_lstm_lm_config
    return {**base, **SIZES, **DROPS}

def clas_config(arch):
    base = awd_qrnn_clas_config if arch is AWD_QRNN else awd_lstm_clas_config
    return {**base, **SIZES, **DROPS}

# ---------------------------------------------------------------------------------------------------------------- timing
class Timer:
    def __init__(self, sync=False): self.sync = sync
    def __enter__(self):
        if self.sync: torch.cuda.synchronize()
        self.c0, self.w0 = time.process_time(), time.perf_counter(); return self
    def __exit__(self, *a):
        if self.sync: torch.cuda.synchronize()
        self.cpu, self.wall = time.process_time() - self.c0, time.perf_counter() - self.w0

def ab(fns: dict, reps: int, sync=False) -> dict:
    "Run each fn once as warm-up, then `reps` interleaved rounds (order alternating); median CPU and wall seconds"
    names = list(fns)
    for n in names: fns[n]()
    res = {n: {'cpu': [], 'wall': []} for n in names}
    for r in range(reps):
        for n in (names if r % 2 == 0 else names[::-1]):
            with Timer(sync) as t: fns[n]()
            res[n]['cpu'].append(t.cpu); res[n]['wall'].append(t.wall)
    return {n: {'cpu_s': statistics.median(v['cpu']), 'wall_s': statistics.median(v['wall']),
                'cpu_runs': [round(x, 4) for x in v['cpu']], 'wall_runs': [round(x, 4) for x in v['wall']]}
            for n, v in res.items()}

# ----------------------------------------------------------------------------------------------------------------- steps
def lm_step_fn(model, bs, device, vocab=VOCAB, bptt=BPTT):
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(2, vocab, (bs, bptt), device=device); y = torch.randint(2, vocab, (bs, bptt), device=device)
    def step():
        model.reset()
        out = model(x)[0]
        loss = F.cross_entropy(out.view(-1, vocab).float(), y.view(-1))
        opt.zero_grad(); loss.backward(); opt.step()
    return step

def clas_step_fn(model, n_docs, doc_len, device, vocab=VOCAB):
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randint(2, vocab, (n_docs, doc_len), device=device); y = torch.randint(0, 8, (n_docs,), device=device)
    def step():
        out = model(x)[0]
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(); loss.backward(); opt.step()
    return step

def infer_fn(encoder, bs, device):
    encoder.to(device).eval()
    x = torch.randint(2, VOCAB, (bs, BPTT), device=device)
    def run():
        with torch.no_grad(): encoder.reset(); encoder(x)
    return run

# ------------------------------------------------------------------------------------------------------------------ FLOPs
def linear_shapes(arch):
    "(in, out) of every matrix product per token: recurrent layers (LSTM: input and hidden), then the decoder"
    shapes = []
    for l in range(LAYERS):
        n_in, n_out = (EMB if l == 0 else HID), (HID if l < LAYERS - 1 else EMB)
        if arch is AWD_QRNN: shapes.append((n_in * (2 if l == 0 else 1), 3 * n_out))
        else: shapes += [(n_in, 4 * n_out), (n_out, 4 * n_out)]
    return shapes

def matmul_flops(arch, n_tok, train=True, decoder=True):
    "FLOPs of the matrix products of a step (forward 2mnk; training x3 for the two gradients)"
    shapes = linear_shapes(arch) + ([(EMB, VOCAB)] if decoder else [])
    return sum(2 * n_tok * i * o for i, o in shapes) * (3 if train else 1)

def plain_matmul_fn(device):
    a, b = torch.randn(64 * BPTT, HID, device=device), torch.randn(HID, 3 * HID, device=device)
    return (lambda: a @ b), 2 * a.shape[0] * HID * 3 * HID

def forget_mult_share(model, bs, reps, device):
    "Time inside ForgetMult's forward/backward loops during QRNN LM steps (CPU time), as a share of the step"
    spent = [0.]
    def wrap(fn):
        def w(*a, **k):
            t0 = time.process_time(); r = fn(*a, **k); spent[0] += time.process_time() - t0; return r
        return w
    orig = qrnn_mod._fm_forward, qrnn_mod._fm_backward
    step = lm_step_fn(model, bs, device)
    step()
    qrnn_mod._fm_forward, qrnn_mod._fm_backward = map(wrap, orig)
    try:
        shares = []
        for _ in range(reps):
            spent[0] = 0.
            with Timer() as t: step()
            shares.append(spent[0] / t.cpu)
    finally: qrnn_mod._fm_forward, qrnn_mod._fm_backward = orig
    return statistics.median(shares), [round(s, 5) for s in shares]

# ------------------------------------------------------------------------------------------------------------------- main

def log(*a): print(*a, flush=True)

def run_cpu(args, R):
    torch.set_num_threads(1)
    dev = 'cpu'
    mk_lm = lambda arch: get_language_model(arch, VOCAB, config=lm_config(arch))
    mk_clas = lambda arch: get_text_classifier(arch, VOCAB, 8, seq_len=BPTT, config=clas_config(arch))
    cpu = R['cpu'] = {}
    torch.manual_seed(0)
    for bs, reps in ((16, args.reps), (64, args.reps_big)):
        q, l = mk_lm(AWD_QRNN), mk_lm(AWD_LSTM)
        r = ab({'qrnn': lm_step_fn(q, bs, dev), 'lstm': lm_step_fn(l, bs, dev), 'matmul': plain_matmul_fn(dev)[0]}, reps)
        mm_fn, mm_flops = plain_matmul_fn(dev)
        n_tok = bs * BPTT
        r['qrnn']['gflops'] = matmul_flops(AWD_QRNN, n_tok) / r['qrnn']['cpu_s'] / 1e9
        r['lstm']['gflops'] = matmul_flops(AWD_LSTM, n_tok) / r['lstm']['cpu_s'] / 1e9
        r['matmul']['gflops'] = mm_flops / r['matmul']['cpu_s'] / 1e9
        r['ratio_cpu'] = r['lstm']['cpu_s'] / r['qrnn']['cpu_s']; r['ratio_wall'] = r['lstm']['wall_s'] / r['qrnn']['wall_s']
        r['flop_ratio'] = matmul_flops(AWD_LSTM, n_tok) / matmul_flops(AWD_QRNN, n_tok)
        r['qrnn_vs_matmul_gflops'] = r['qrnn']['gflops'] / r['matmul']['gflops']
        r['forget_mult_share'], r['forget_mult_share_runs'] = forget_mult_share(q, bs, max(2, reps // 2 + 1), dev)
        cpu[f'lm_step_bs{bs}'] = r
        log(f'LM step bs {bs}: qrnn {r["qrnn"]["cpu_s"]:.3f}s lstm {r["lstm"]["cpu_s"]:.3f}s ratio {r["ratio_cpu"]:.2f} '
            f'(wall {r["ratio_wall"]:.2f}); qrnn {r["qrnn"]["gflops"]:.1f} GFLOP/s vs matmul {r["matmul"]["gflops"]:.1f}; '
            f'forget-mult {100 * r["forget_mult_share"]:.2f}%')
        del q, l
    q, l = mk_clas(AWD_QRNN), mk_clas(AWD_LSTM)
    r = ab({'qrnn': clas_step_fn(q, args.docs, args.doc_len, dev), 'lstm': clas_step_fn(l, args.docs, args.doc_len, dev)},
           args.reps)
    r['ratio_cpu'] = r['lstm']['cpu_s'] / r['qrnn']['cpu_s']; r['ratio_wall'] = r['lstm']['wall_s'] / r['qrnn']['wall_s']
    cpu['clas_step'] = r
    log(f'classifier step {args.docs}x{args.doc_len}: qrnn {r["qrnn"]["cpu_s"]:.3f}s lstm {r["lstm"]["cpu_s"]:.3f}s '
        f'ratio {r["ratio_cpu"]:.2f} (wall {r["ratio_wall"]:.2f})')
    del q, l
    q, l = mk_lm(AWD_QRNN)[0], mk_lm(AWD_LSTM)[0]
    bs = args.infer_bs
    r = ab({'qrnn': infer_fn(q, bs, dev), 'lstm': infer_fn(l, bs, dev)}, args.reps)
    for n in ('qrnn', 'lstm'): r[n]['tokens_per_s'] = bs * BPTT / r[n]['cpu_s']
    r['ratio_cpu'] = r['lstm']['cpu_s'] / r['qrnn']['cpu_s']; r['ratio_wall'] = r['lstm']['wall_s'] / r['qrnn']['wall_s']
    cpu['encoder_inference'] = r
    log(f'encoder inference bs {bs}: qrnn {r["qrnn"]["tokens_per_s"]:.0f} tok/s lstm {r["lstm"]["tokens_per_s"]:.0f} '
        f'tok/s ratio {r["ratio_cpu"]:.2f}')

def run_gpu(args, R):
    dev = 'cuda'
    g = R['gpu'] = {'device': torch.cuda.get_device_name()}
    f = torch.rand(BPTT, 64, HID, device=dev, requires_grad=True); z = torch.randn(BPTT, 64, HID, device=dev, requires_grad=True)
    def fm(impl):
        def run():
            c = forget_mult(f, z, batch_first=False, impl=impl); c.sum().backward()
        return run
    ref = forget_mult(f, z, batch_first=False, impl='pure'); fused = forget_mult(f, z, batch_first=False, impl='fused')
    g['fused_max_abs_diff'] = (ref - fused).abs().max().item()
    g['forget_mult'] = ab({'fused': fm('fused'), 'pure': fm('pure')}, 20, sync=True)
    g['forget_mult']['speedup'] = g['forget_mult']['pure']['wall_s'] / g['forget_mult']['fused']['wall_s']
    mk_lm = lambda arch: get_language_model(arch, VOCAB, config=lm_config(arch))
    mk_clas = lambda arch: get_text_classifier(arch, VOCAB, 8, seq_len=BPTT, config=clas_config(arch))
    r = ab({'qrnn': lm_step_fn(mk_lm(AWD_QRNN), 64, dev), 'lstm': lm_step_fn(mk_lm(AWD_LSTM), 64, dev)}, 20, sync=True)
    r['ratio_wall'] = r['lstm']['wall_s'] / r['qrnn']['wall_s']; g['lm_step_bs64'] = r
    r = ab({'qrnn': clas_step_fn(mk_clas(AWD_QRNN), 32, args.doc_len, dev),
            'lstm': clas_step_fn(mk_clas(AWD_LSTM), 32, args.doc_len, dev)}, 10, sync=True)
    r['ratio_wall'] = r['lstm']['wall_s'] / r['qrnn']['wall_s']; g['clas_step_bs32'] = r
    log(f'GPU: fused forget-mult {g["forget_mult"]["speedup"]:.1f}x pure; LM ratio {g["lm_step_bs64"]["ratio_wall"]:.2f}; '
        f'classifier ratio {g["clas_step_bs32"]["ratio_wall"]:.2f}')

TARGETS = [  # (name, path into results, minimum or maximum, bound)
    ('LM step bs 16: LSTM/QRNN CPU time', ('cpu', 'lm_step_bs16', 'ratio_cpu'), '>=', 2.2),
    ('LM step bs 64: LSTM/QRNN CPU time', ('cpu', 'lm_step_bs64', 'ratio_cpu'), '>=', 2.2),
    ('classifier step: LSTM/QRNN CPU time', ('cpu', 'clas_step', 'ratio_cpu'), '>=', 3.0),
    ('encoder inference: LSTM/QRNN CPU time', ('cpu', 'encoder_inference', 'ratio_cpu'), '>=', 3.5),
    ('QRNN LM step bs 16: GFLOP/s vs plain matmul', ('cpu', 'lm_step_bs16', 'qrnn_vs_matmul_gflops'), '>=', 0.75),
    ('QRNN LM step bs 64: GFLOP/s vs plain matmul', ('cpu', 'lm_step_bs64', 'qrnn_vs_matmul_gflops'), '>=', 0.75),
    ('ForgetMult share of QRNN LM step bs 16', ('cpu', 'lm_step_bs16', 'forget_mult_share'), '<=', 0.02),
    ('ForgetMult share of QRNN LM step bs 64', ('cpu', 'lm_step_bs64', 'forget_mult_share'), '<=', 0.02),
    ('GPU LM step bs 64: LSTM/QRNN', ('gpu', 'lm_step_bs64', 'ratio_wall'), '>=', 2.0),
    ('GPU classifier step bs 32: LSTM/QRNN', ('gpu', 'clas_step_bs32', 'ratio_wall'), '>=', 3.0),
]

def check_targets(R):
    out = []
    for name, path, op, bound in TARGETS:
        v = R
        for k in path: v = v.get(k) if isinstance(v, dict) else None
        if v is None: out.append(dict(target=name, bound=f'{op} {bound}', measured=None, met=None)); continue
        out.append(dict(target=name, bound=f'{op} {bound}', measured=round(v, 4), met=v >= bound if op == '>=' else v <= bound))
    return out

def markdown(R) -> str:
    c, m = R['cpu'], R['meta']
    L = [f'**Machine:** {m["cpu_model"]}, {m["n_cpus"]} cores, torch {m["torch"]} ({m["threads"]} thread for timing), '
         f'Python {m["python"]}; **date:** {m["date"]}.', '',
         f'**Shapes:** embedding {EMB}, hidden {HID}, {LAYERS} layers, vocabulary {VOCAB}, bptt {BPTT}; AWD_QRNN (window 2 '
         f'on layer 0) vs fastai AWD_LSTM, same dropouts; Adam step included. Median of {m["reps"]} runs after a '
         f'warm-up ({m["reps_big"]} at batch 64), A/B interleaved, process CPU time.', '',
         '| measurement | QRNN | LSTM | LSTM/QRNN (CPU) | LSTM/QRNN (wall) | target |', '|---|---|---|---|---|---|']
    tgt = {t['target']: t for t in R['targets']}
    def row(name, r, unit='s', key='cpu_s', fmt='{:.3f}', target=''):
        L.append(f'| {name} | {fmt.format(r["qrnn"][key])} {unit} | {fmt.format(r["lstm"][key])} {unit} | '
                 f'{r["ratio_cpu"]:.2f} | {r["ratio_wall"]:.2f} | {target} |')
    def tg(name): t = tgt[name]; return f'{t["bound"]} {"met" if t["met"] else "**missed**"}'
    row('LM training step, batch 16', c['lm_step_bs16'], target=tg('LM step bs 16: LSTM/QRNN CPU time'))
    row('LM training step, batch 64', c['lm_step_bs64'], target=tg('LM step bs 64: LSTM/QRNN CPU time'))
    row(f'classifier fine-tuning step, {m["docs"]} docs x {m["doc_len"]} tokens', c['clas_step'],
        target=tg('classifier step: LSTM/QRNN CPU time'))
    row(f'encoder inference, batch {m["infer_bs"]} x {BPTT}', c['encoder_inference'], unit='tok/s', key='tokens_per_s',
        fmt='{:.0f}', target=tg('encoder inference: LSTM/QRNN CPU time'))
    L += ['', '| QRNN LM step | batch 16 | batch 64 | target |', '|---|---|---|---|']
    a, b = c['lm_step_bs16'], c['lm_step_bs64']
    L.append(f'| matrix-product GFLOP/s (QRNN / LSTM / plain {64 * BPTT}x{HID}x{3 * HID} matmul) | '
             f'{a["qrnn"]["gflops"]:.1f} / {a["lstm"]["gflops"]:.1f} / {a["matmul"]["gflops"]:.1f} | '
             f'{b["qrnn"]["gflops"]:.1f} / {b["lstm"]["gflops"]:.1f} / {b["matmul"]["gflops"]:.1f} | |')
    L.append(f'| QRNN step GFLOP/s as share of plain matmul | {100 * a["qrnn_vs_matmul_gflops"]:.0f} % | '
             f'{100 * b["qrnn_vs_matmul_gflops"]:.0f} % | >= 75 % |')
    L.append(f'| ForgetMult share of the QRNN step (forward + backward) | {100 * a["forget_mult_share"]:.2f} % | '
             f'{100 * b["forget_mult_share"]:.2f} % | <= 2 % |')
    L.append(f'| matrix-product FLOP ratio LSTM/QRNN | {a["flop_ratio"]:.2f} | {b["flop_ratio"]:.2f} | |')
    if 'gpu' in R:
        g = R['gpu']
        L += ['', f'**GPU ({g["device"]}):** fused ForgetMult {g["forget_mult"]["speedup"]:.1f}x faster than the pure loop '
              f'(max abs diff {g["fused_max_abs_diff"]:.1e}); LM step batch 64 LSTM/QRNN {g["lm_step_bs64"]["ratio_wall"]:.2f} '
              f'(target >= 2.0); classifier step batch 32 LSTM/QRNN {g["clas_step_bs32"]["ratio_wall"]:.2f} (target >= 3.0).']
    else: L += ['', 'No GPU in this run: the GPU comparisons (fused vs pure ForgetMult, paper batch sizes) were not measured.']
    return '\n'.join(L) + '\n'

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--reps', type=int, default=3); p.add_argument('--reps-big', type=int, default=3)
    p.add_argument('--docs', type=int, default=8); p.add_argument('--doc-len', type=int, default=500)
    p.add_argument('--infer-bs', type=int, default=64)
    p.add_argument('--quick', action='store_true', help='smoke run: 1 repetition, no files unless --out')
    p.add_argument('--out', type=Path, default=None, help='results folder (default bench/results for a full run)')
    args = p.parse_args()
    if args.quick: args.reps = args.reps_big = 1
    out = args.out or (None if args.quick else Path(__file__).parent/'results')
    R = {'meta': dict(date=dt.datetime.now().astimezone().isoformat(timespec='seconds'), cpu_model=cpu_model(),
                      n_cpus=os.cpu_count(), threads=1,
                      torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                      reps=args.reps, reps_big=args.reps_big, docs=args.docs, doc_len=args.doc_len, infer_bs=args.infer_bs,
                      shapes=dict(vocab=VOCAB, emb=EMB, hidden=HID, layers=LAYERS, bptt=BPTT), dropouts=DROPS)}
    t0 = time.perf_counter()
    run_cpu(args, R)
    if torch.cuda.is_available(): run_gpu(args, R)
    R['targets'] = check_targets(R)
    R['meta']['bench_wall_s'] = round(time.perf_counter() - t0, 1)
    for t in R['targets']: log(f'{"MET   " if t["met"] else "n/a   " if t["met"] is None else "MISSED"} {t["target"]}: '
                               f'{t["measured"]} ({t["bound"]})')
    if out:
        write_results(out, 'qrnn_vs_lstm', R, markdown(R))
        log(f'wrote {out}/qrnn_vs_lstm.json and .md')
    else: print(markdown(R))

if __name__ == '__main__': main()
