"""Evaluation harness on ../shared/data/ddtp (not a test): the classifier-recipe levers from one trained LM.

bench/ddtp.py measured the recipe levers with weak LMs, where the classifier rewrites the encoder anyway. This runs
them from a given LM package (e.g. the 8-epoch "no wiki" LM of bench/in_domain_budget.py) at one label set, each with
--seeds, all with the same steps and flat lr unless the lever changes them:

  * base      at least M steps after H frozen-encoder steps (the harness's recipe)
  * gradual   ULMFiT's gradual unfreezing, one more layer group every M/8 steps, M steps in all
  * slice     base with discriminative rates slice(lr/2.6**4, lr)
  * frozen    the encoder frozen for 1.5 M steps, then one epoch of everything (the LM's features as they are)
  * long      base with 2 M steps
  * low_lr    base at a third of the top rate

The frozen phase lasts H = --head-steps (default M/2). At 1000 labels (`--labels train`), `--steps 330 --head-steps 55
--epochs 1` is bench/corpus_budget.py's recipe: one frozen epoch, then 6 epochs of 55 steps at batch 18.

Accuracy on valid.csv, mean +- sd over seeds. Resumable: finished runs are kept in the JSON.

Run:   OMP_NUM_THREADS=1 .venv/bin/python bench/recipe_levers.py --lm-exp bench/work/in_domain_budget/de/e8 --lang de
Writes bench/results/recipe_levers_<lang>.{json,md} (recipe_levers_<lang>_<labels>.* for a label file other than train_100).
"""
import argparse, os, statistics, time
from datetime import date
from pathlib import Path
import pandas as pd, torch
from multifit_fastai.pipeline import MultiFiT
from multifit_fastai.package import load_package
from multifit_fastai.precision import resolve_precision
from multifit_fastai.core import atomic_write_text
from ddtp import Results, fmt
from machine import cpu_model

HERE = Path(__file__).resolve().parent
LEVERS = {'base': 'at least M steps after H frozen-encoder steps, flat lr', 'gradual': 'gradual unfreezing (a layer group every M/8 steps)',
          'slice': "base with discriminative rates slice(lr/2.6**4, lr)", 'frozen': 'encoder frozen for 1.5 M steps, then one epoch of everything',
          'long': 'base with 2 M steps', 'low_lr': 'base at a third of the top rate'}

def lever_kwargs(lever: str, m: int, lr: float, h: int | None = None) -> dict:
    "Classifier preset fields of `lever` at `m` steps after `h` frozen-encoder steps (default m/2) and top rate `lr`"
    h = m // 2 if h is None else h
    return {'base': dict(min_steps=m, head_steps=h, lr=lr, lr_low=None),
            'gradual': dict(min_steps=m, unfreeze='gradual', head_steps=m // 8, lr=lr, lr_low=None),
            'slice': dict(min_steps=m, head_steps=h, lr=lr, lr_low=lr / 2.6**4),
            'frozen': dict(min_steps=0, head_steps=3 * m // 2, epochs=1, lr=lr, lr_low=None),
            'long': dict(min_steps=2 * m, head_steps=h, lr=lr, lr_low=None),
            'low_lr': dict(min_steps=m, head_steps=h, lr=lr / 3, lr_low=None)}[lever]

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--lang', default='de')
    ap.add_argument('--lm-exp', type=Path, required=True, help='a MultiFiT experiment folder with a tokenizer and an LM package')
    ap.add_argument('--labels', default='train_100', help='the labelled file of ddtp/<lang>/ (train_100 or train)')
    ap.add_argument('--levers', nargs='+', default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--steps', type=int, default=200, help='M'); ap.add_argument('--lr', type=float, default=1e-2)
    ap.add_argument('--head-steps', type=int, help='H, the frozen-encoder steps (default: M/2)')
    ap.add_argument('--epochs', type=int, help="the classifier's epochs when they make more than M steps (default: the preset's)")
    ap.add_argument('--bs', type=int, default=18); ap.add_argument('--epoch-valid', type=int, default=60)
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'auto'))
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    d = a.data/'ddtp'/a.lang
    train, va = pd.read_csv(d/f'{a.labels}.csv'), pd.read_csv(d/'valid.csv')
    lm = load_package(MultiFiT(a.lm_exp, lang=a.lang, verbose=False).encoder_source()).preset  # the classifier takes the LM's shape
    dims = {k: getattr(lm, k) for k in ('emb_sz', 'n_hid', 'n_layers', 'vocab_sz', 'bptt')}
    exp = MultiFiT(a.lm_exp, lang=a.lang, size='custom', overrides=dims)
    head = a.steps // 2 if a.head_steps is None else a.head_steps
    h = exp.history.get('finetune_lm', exp.history.get('pretrain', {}))
    meta = dict(lang=a.lang, lm=str(exp.encoder_source()), lm_epochs=h.get('epochs'), lm_valid_perplexity=h.get('valid_perplexity'),
                labels=a.labels, n_train=len(train), steps=a.steps, head_steps=head, lr=a.lr, bs=a.bs, seeds=a.seeds, precision=resolve_precision(a.precision),
                date=str(date.today()), machine=f'{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}')
    stem = f'recipe_levers_{a.lang}' + ('' if a.labels == 'train_100' else f'_{a.labels}')
    res = Results(a.out/f'{stem}.json', meta)
    for lever in a.levers:
        for seed in a.seeds:
            key = f'{lever}/s{seed}'
            if res.has(key): continue
            t0, name, kw = time.time(), f'levers_{lever}_s{seed}', lever_kwargs(lever, a.steps, a.lr, head)
            if a.epochs: kw.setdefault('epochs', a.epochs)  # a lever's own epochs win
            pkg_dir = exp.train_classifier(train, valid=va[:a.epoch_valid], name=name, encoder='auto', bs=a.bs, seed=seed,
                                           precision=a.precision, overwrite=True, **kw)
            acc = float((load_package(pkg_dir).predict(list(va.text)).label.values == va.label.astype(str).values).mean())
            res.put(key, dict(accuracy=round(acc, 4), steps=exp.history[name]['steps'], seconds=round(time.time() - t0, 1)))
    runs, m = res.d['runs'], res.d['meta']
    accs = lambda l: [v['accuracy'] for k, v in runs.items() if k.split('/')[0] == l]
    base = accs('base')
    rows = [f"Classifier-recipe levers from one LM (`{m['lm']}`, {m['lm_epochs']} LM epochs, held-out perplexity "
            f"{m['lm_valid_perplexity']:.1f}), {m['lang']} `{m['labels']}.csv` ({m['n_train']} labels), M = {m['steps']} steps after H = {m.get('head_steps', m['steps'] // 2)} frozen-encoder steps, batch "
            f"{m['bs']}, top lr {m['lr']}, seeds {m['seeds']}, precision {m['precision']}. {m['machine']}, {m['date']}. Accuracy on "
            f"`valid.csv`, mean ± sd over seeds; the difference to `base` in points (inside the sds: a tie).", '',
            '| lever | what | accuracy | vs base |', '|---|---|---|---|']
    for l in LEVERS:
        xs = accs(l)
        if xs: rows.append(f"| {l} | {LEVERS[l]} | {fmt(xs)} | {'' if l == 'base' or not base else f'{100 * (statistics.mean(xs) - statistics.mean(base)):+.1f}'} |")
    atomic_write_text(a.out/f'{stem}.md', '\n'.join(rows) + '\n')
    print('\n'.join(rows))

if __name__ == '__main__': main()
