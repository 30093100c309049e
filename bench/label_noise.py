"""Benchmark: robustness to label noise, pretrained vs non-pretrained MultiFiT (MultiFiT paper, Fig. 3; not a timed test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/label_noise.py            # full run -> bench/results/label_noise.{json,png}
    OMP_NUM_THREADS=1 .venv/bin/python bench/label_noise.py --quick    # smoke run -> bench/results/label_noise_quick.*

On one DDTP language (default de), each training label is flipped to a different random class with probability p
(`perturb_labels`), p in {0, 0.15, 0.3, 0.45, 0.6, 0.75}. Two classifiers train on the noisy labels: one fine-tuned from
an LM pretrained on `corpora/<lang>.txt.gz` (and fine-tuned on the train texts), one with the same architecture from
random weights. Accuracy on the clean `valid.csv` is plotted against p with the fraction of correct labels (1 - p) as the
reference line: a model above that line learns past its labels' noise.

Resumable: the JSON file is updated after every (setting, p, seed); finished entries are skipped on a re-run with the
same settings. The LM package is cached under --work (default bench/work/label_noise).
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from zero_shot import REPO, add_model_args, apply_quick, build_lm, Results, lm_settings, stratified_head, log, machine
from multifit_fastai.bootstrap import perturb_labels, student_dataloaders, train_student, student_preset, student_predict, label_accuracy
from multifit_fastai.package import load_package

NOISE = [0., 0.15, 0.3, 0.45, 0.6, 0.75]
SETTINGS = ('pretrained', 'scratch')

def plot(res: Results, path: Path, lang: str, quick: bool):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ps = sorted({e['p'] for e in res.entries.values()})
    for s, style in zip(SETTINGS, ('o-', 's--')):
        pts = [(p, [e['acc'] for e in res.entries.values() if e['setting'] == s and e['p'] == p]) for p in ps]
        pts = [(p, np.mean(v)) for p, v in pts if v]
        if pts: ax.plot(*zip(*pts), style, label=f'MultiFiT, {"pretrained LM" if s == "pretrained" else "no pretraining"}')
    xs = np.linspace(0, max(ps + [0.75]), 50)
    ax.plot(xs, 1 - xs, ':', color='grey', label='fraction of correct labels')
    ax.set_xlabel('label noise p (share of flipped training labels)'); ax.set_ylabel('valid accuracy')
    ax.set_ylim(0, 1); ax.grid(alpha=.3); ax.legend(loc='lower left', fontsize=8)
    ax.set_title(f'DDTP {lang}: robustness to label noise' + (' (QUICK smoke run)' if quick else ''), fontsize=10)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke run: tiny models, few rows, p in {0, 0.45, 0.75}')
    p.add_argument('--lang', default='de')
    p.add_argument('--noise', type=float, nargs='+', default=NOISE, help='noise levels p (default: %(default)s)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='noise seeds, one run each (default: %(default)s)')
    p.add_argument('--n-train', type=int, help='training rows (class-balanced subset; default: all)')
    p.add_argument('--n-valid', type=int, help='valid rows (default: all)')
    p.add_argument('--out', type=Path, help='results stem (default: bench/results/label_noise[_quick])')
    p.add_argument('--fresh', action='store_true', help='ignore existing results')
    add_model_args(p)
    a = p.parse_args(argv)
    if a.quick:
        apply_quick(a)
        if a.noise == NOISE: a.noise = [0., 0.45, 0.75]
        a.n_train, a.n_valid = a.n_train or 240, a.n_valid or 120
    out = a.out or REPO/'bench'/'results'/('label_noise_quick' if a.quick else 'label_noise')
    work = a.work or REPO/'bench'/'work'/'label_noise'
    work.mkdir(parents=True, exist_ok=True)
    settings = dict(lang=a.lang, n_train=a.n_train, n_valid=a.n_valid, clf_epochs=a.clf_epochs, clf_bs=a.clf_bs, clf_lr=a.clf_lr,
                    clf_flat=a.clf_flat, **(dict(lm_dir=a.lm_dir) if a.lm_dir else lm_settings(a)))
    res = Results(out.with_suffix('.json'), settings, a.fresh)
    tr = stratified_head(pd.read_csv(a.data/'ddtp'/a.lang/'train.csv'), a.n_train, a.seed)
    va = pd.read_csv(a.data/'ddtp'/a.lang/'valid.csv')
    va = va.sample(n=min(a.n_valid, len(va)), random_state=a.seed) if a.n_valid else va
    classes = sorted(tr.label.unique())
    jobs = [(s, q, seed) for q in a.noise for seed in a.seeds for s in SETTINGS]
    todo = [j for j in jobs if not res.done(f'{j[0]}|p={j[1]}|seed={j[2]}')]
    log(f'{len(todo)} of {len(jobs)} runs to do (results: {res.path})')
    if todo:
        lm = Path(a.lm_dir.format(lang=a.lang)) if a.lm_dir else build_lm(a.lang, a, work, finetune_texts=list(tr.text))
        pkg = load_package(lm)
        preset = student_preset(pkg, epochs=a.clf_epochs, bs=a.clf_bs, seed=a.seed, lr=a.clf_lr,
                                **(dict(lr_low=None) if a.clf_flat else {}))
    for s, q, seed in todo:
        t0 = time.time()
        noisy = perturb_labels(tr, q, seed=seed, classes=classes)
        noisy.attrs['classes'] = classes
        dls = student_dataloaders(pkg.tokenizer, noisy[['text', 'label']], va[['text', 'label']], kind='hard',
                                  classes=classes, bs=a.clf_bs, seq_len=a.bptt)
        learn = train_student(dls, pkg if s == 'pretrained' else None, preset=preset)
        acc = label_accuracy(student_predict(learn, va.text), va.label)
        res.add(f'{s}|p={q}|seed={seed}', dict(setting=s, p=q, seed=seed, acc=acc, correct_labels=float(1 - noisy.noisy.mean()),
                                                n_train=len(tr), n_valid=len(va), seconds=round(time.time() - t0)))
        log(f'{s:10s} p={q:.2f} seed={seed}: valid accuracy {acc:.3f} (labels correct: {1 - noisy.noisy.mean():.3f}, '
            f'{time.time() - t0:.0f}s)')
        plot(res, out.with_suffix('.png'), a.lang, a.quick)
    if res.entries: plot(res, out.with_suffix('.png'), a.lang, a.quick)
    for k, e in sorted(res.entries.items(), key=lambda kv: (kv[1]['setting'], kv[1]['p'])):
        print(f"{e['setting']:10s} p={e['p']:.2f} seed={e['seed']}: accuracy {e['acc']:.3f}  (1 - p = {1 - e['p']:.2f})")

if __name__ == '__main__': main()
