"""Benchmark (not a test): where a QRNN LM training step spends its CPU time at the paper shape, next to fastai's LSTM.

The same step as `bench/qrnn_vs_lstm.py` (AWD_QRNN vs AWD_LSTM LM, embedding 400, hidden 1550, 4 layers, vocabulary
15000, bptt 70, same dropouts, cross-entropy, backward, Adam), one thread, profiled with `torch.profiler` over
`--steps` steps after a warm-up. Self CPU time is grouped by what the operators do (matrix products by shape, the
tied decoder's softmax and loss, the optimizer, dropout masks, element-wise gate maths, copies, the embedding), so the
two models' budgets can be read side by side (both profiled in one run, one after the other; the unprofiled A/B
ratio is `bench/qrnn_vs_lstm.py`'s).

Run:   OMP_NUM_THREADS=1 .venv/bin/python bench/qrnn_profile.py [--bs 64] [--steps 3]
Writes bench/results/qrnn_profile.{json,md}.
"""
from __future__ import annotations
import argparse, collections, os, platform, time
from datetime import date
from pathlib import Path
import torch
from torch.profiler import profile, ProfilerActivity
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model
from machine import cpu_model
from multifit_fastai.core import atomic_write_json, atomic_write_text
from multifit_fastai.models import AWD_QRNN
from qrnn_vs_lstm import lm_step_fn, lm_config, matmul_flops, VOCAB, EMB, HID, LAYERS, BPTT

GROUPS = [  # (group, operator-name fragments), first match wins
    ('fused LSTM layers (oneDNN RNN, their products inside)', ('rnn_layer', 'lstm')),
    ('matrix products', ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::addbmm')),
    ('softmax + loss (decoder output)', ('log_softmax', 'nll_loss', 'softmax')),
    ('optimizer (Adam)', ('_foreach', 'adam', 'lerp', 'addcmul', 'addcdiv', 'sqrt')),
    ('dropout masks', ('bernoulli', 'dropout', 'native_dropout')),
    ('embedding', ('embedding', 'index_select', 'index_add', 'index_put', 'scatter')),
    ('gate maths (sigmoid, tanh, mul, add)', ('sigmoid', 'tanh', 'aten::mul', 'aten::add', 'aten::sub', 'aten::div', 'aten::rsub',
                                              'threshold', 'aten::neg', 'where')),
    ('copies, views, allocation', ('copy_', 'clone', 'contiguous', 'aten::cat', 'aten::stack', 'fill_', 'zero_', 'empty',
                                   'aten::to', 'aten::t', 'transpose', 'view', 'reshape', 'slice', 'select', 'unbind',
                                   'split', 'chunk', 'narrow', 'expand', 'as_strided', 'resize_', 'aten::sum', 'unsqueeze',
                                   'squeeze', 'permute', 'detach', 'alias', 'set_')),
]

def group_of(name: str) -> str:
    for g, frags in GROUPS:
        if any(f in name for f in frags): return g
    return 'other'

def profile_step(step, steps: int) -> dict:
    step()  # warm-up
    t0 = time.process_time()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps): step()
    total = (time.process_time() - t0) / steps
    by_group, by_op, mm = collections.Counter(), collections.Counter(), collections.Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        s = e.self_cpu_time_total / 1e6 / steps
        g = group_of(e.key)
        by_group[g] += s; by_op[e.key] += s
        if g == 'matrix products': mm[f'{e.key} {e.input_shapes}'] += s
    prof_total = sum(by_group.values())
    return dict(step_cpu_s=round(total, 4), profiled_cpu_s=round(prof_total, 4),
                groups={k: round(v, 4) for k, v in by_group.most_common()},
                top_ops={k: round(v, 4) for k, v in by_op.most_common(15)},
                matmuls={k: round(v, 4) for k, v in mm.most_common(12)})

def markdown(R) -> str:
    q, l = R['qrnn'], R['lstm']
    L = ['# Where the LM training step spends its time', '',
         f'**Machine:** {R["machine"]}; {R["date"]}. **Shape:** batch {R["bs"]} x bptt {BPTT}, embedding {EMB}, hidden {HID}, '
         f'{LAYERS} layers, vocabulary {VOCAB}; AWD_QRNN vs fastai AWD_LSTM LM, same dropouts, cross-entropy + backward + '
         f'torch Adam; one thread; `torch.profiler` self CPU time per step, mean of {R["steps"]} steps after a warm-up '
         '(the profiler adds its own overhead: shares matter, not absolute seconds).', '',
         f'Step CPU time (profiled): QRNN {q["step_cpu_s"]:.3f} s, LSTM {l["step_cpu_s"]:.3f} s, LSTM/QRNN '
         f'**{l["step_cpu_s"] / q["step_cpu_s"]:.2f}**; matrix-product FLOPs LSTM/QRNN {R["flop_ratio"]:.2f}, so the ratio '
         'can reach at most that when both spend all their time in products at the same speed.', '',
         '| group | QRNN s/step | QRNN share | LSTM s/step | LSTM share |', '|---|---|---|---|---|']
    for g in dict.fromkeys(list(q['groups']) + list(l['groups'])):
        a, b = q['groups'].get(g, 0.), l['groups'].get(g, 0.)
        L.append(f'| {g} | {a:.3f} | {100 * a / q["profiled_cpu_s"]:.1f} % | {b:.3f} | {100 * b / l["profiled_cpu_s"]:.1f} % |')
    for name, r in (('QRNN', q), ('LSTM', l)):
        how = (f'{R["qrnn_mm_gflops"]:.1f} GFLOP/s over the time in products' if name == 'QRNN' else
               'the decoder\'s; the recurrent products run inside the fused oneDNN LSTM layers')
        L += ['', f'**{name} matrix products** ({how}), by operator and input shapes:', '',
              '| operator [shapes] | s/step |', '|---|---|']
        L += [f'| `{k}` | {v:.3f} |' for k, v in r['matmuls'].items()]
        L += ['', f'{name} operators with the most self time: ' + ', '.join(f'`{k}` {v:.3f} s' for k, v in list(r['top_ops'].items())[:8]) + '.']
    L += ['', R['findings']] if R.get('findings') else []
    return '\n'.join(L) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bs', type=int, default=64); ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'qrnn_profile')
    ap.add_argument('--findings', default='', help='a paragraph for the markdown (what the profile says)')
    a = ap.parse_args()
    torch.set_num_threads(1); torch.manual_seed(0)
    R = dict(machine=f'{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}',
             date=str(date.today()), bs=a.bs, steps=a.steps, findings=a.findings)
    n_tok = a.bs * BPTT
    R['flop_ratio'] = matmul_flops(AWD_LSTM, n_tok) / matmul_flops(AWD_QRNN, n_tok)
    for name, arch in (('qrnn', AWD_QRNN), ('lstm', AWD_LSTM)):
        step = lm_step_fn(get_language_model(arch, VOCAB, config=lm_config(arch)), a.bs, 'cpu')
        R[name] = profile_step(step, a.steps)
        R[f'{name}_mm_gflops'] = matmul_flops(arch, n_tok) / R[name]['groups'].get('matrix products', float('nan')) / 1e9
        print(name, R[name]['step_cpu_s'], R[name]['groups'], flush=True)
        del step
    atomic_write_json(a.out.with_suffix('.json'), R); atomic_write_text(a.out.with_suffix('.md'), markdown(R))
    print(markdown(R))

if __name__ == '__main__': main()
