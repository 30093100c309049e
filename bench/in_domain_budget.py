"""Evaluation harness on ../shared/data/ddtp (not a test): downstream accuracy against in-domain LM training tokens.

The paper's "MultiFiT, no wiki" row: no corpus pretraining, the LM trained only on the task language's in-domain
documents (here every document of `ddtp/<lang>/unlabelled.csv.gz`, not a subset), then the classifier. One LM per
budget in --epochs, each with its own complete one-cycle schedule (no mid-schedule snapshots), all sharing one
SentencePiece tokenizer trained on the same in-domain text; budget 0 is the classifier without pretraining (same
tokenizer). For every budget:

  * held-out in-domain perplexity (5 % of the documents) and a linear probe of the LM's frozen features
    (bench/probe.py, 1000 and 100 labels);
  * the classifier with --seeds at 1000 labels (train.csv; bench/ddtp.py's settings: flat lr, --clas-epochs, one frozen
    epoch first when pretrained) and at 100 labels (train_100.csv; at least --min-steps-100 optimizer steps, after
    M/2 steps with the encoder frozen when pretrained: the best 100-label recipe bench/ddtp.py measured).

Accuracy on valid.csv, mean +- sd over seeds; TF-IDF + LR beside it. Resumable: finished entries are kept in the JSON.

Run:   OMP_NUM_THREADS=2 .venv/bin/python bench/in_domain_budget.py --lang de --epochs 1 2 4
Writes bench/results/in_domain_budget_<lang>.{json,md,png} (or in_domain_budget_quick.* with --quick).
"""
import argparse, os, statistics, time
from datetime import date
from pathlib import Path
import torch
from multifit_fastai.pipeline import tfidf_baseline
from multifit_fastai.package import load_package
from multifit_fastai.precision import resolve_precision
from ddtp import Results, load_lang, classifier_run, experiment, fmt, QUICK_DIMS
from probe import probe_encoder, encoder_of, embedding_topic_agreement
from machine import cpu_model

HERE = Path(__file__).resolve().parent

def lm_for(a, lang, epochs, unl):
    "The experiment of budget `epochs` (0: no LM), its tokenizer shared from the budget-0 experiment"
    e0 = experiment(a, a.work/lang/'e0', lang, {})
    e0.train_tokenizer(unl)
    if epochs == 0: return e0
    e = experiment(a, a.work/lang/f'e{epochs}', lang, {}, share_from=e0)
    e.finetune_lm(unl, epochs=epochs, bs=a.lm_bs, lr=a.lm_lr, first_epoch_last_group=False, precision=a.precision)  # from scratch
    return e

def budget_keys(a, lang, epochs) -> list:
    "The result entries of budget `epochs`"
    return ([f'{lang}/e{epochs}/lm'] if epochs else []) + [f'{lang}/e{epochs}/{n}/s{s}' for n in a.labels for s in a.seeds]

def add_topic_agreement(a, res, lang, epochs, tr):
    "The LM's embedding topic agreement (bench/probe.py) in its entry, when the entry lacks it and the LM is still in --work"
    k, lm = f'{lang}/e{epochs}/lm', a.work/lang/f'e{epochs}'/'lm_finetuned'
    if not epochs or not res.has(k) or 'emb_topic' in res.d['runs'][k] or not (lm/'config.json').is_file(): return
    ta = embedding_topic_agreement(load_package(lm), tr)
    res.put(k, {**res.d['runs'][k], 'emb_topic': ta['trained'], 'emb_topic_random': ta['random']})

def budget(a, res, lang, epochs, tr, t100, va, unl):
    if all(res.has(k) for k in budget_keys(a, lang, epochs)):  # measured before: no LM to retrain
        return add_topic_agreement(a, res, lang, epochs, tr)
    exp = lm_for(a, lang, epochs, unl)
    enc = None if epochs == 0 else 'auto'
    h = exp.history.get('finetune_lm', {})
    if epochs and not res.has(f'{lang}/e{epochs}/lm'):
        pkg = load_package(exp.stage_path('finetune_lm'))
        t0 = time.time(); pr = probe_encoder(encoder_of(pkg), pkg.tokenizer, tr, t100, va)
        res.put(f'{lang}/e{epochs}/lm', dict(epochs=epochs, seconds=h.get('seconds'), steps=h.get('steps'),
                tokens_per_epoch=h.get('tokens_per_epoch'), train_texts=h.get('train_texts'), valid_perplexity=round(h.get('valid_perplexity'), 2),
                probe_1000=round(pr[1000], 4), probe_100=round(pr[100], 4), probe_seconds=round(time.time() - t0, 1)))
    add_topic_agreement(a, res, lang, epochs, tr)
    classifiers(a, res, f'{lang}/e{epochs}', exp, enc, tr, t100, va)

def classifiers(a, res, prefix, exp, enc, tr, t100, va):
    "The classifier with every seed at 1000 and 100 labels (100: at least M steps, after M/2 frozen-encoder steps from an LM), and TF-IDF"
    lang = prefix.split('/')[0]
    for n, train, kw in ((1000, tr, {}), (100, t100, dict(min_steps=a.min_steps_100, head_steps=a.min_steps_100 // 2))):
        if n not in a.labels: continue
        if enc is None: kw = {k: v for k, v in kw.items() if k != 'head_steps'}  # no frozen phase without an LM
        for seed in a.seeds:
            classifier_run(a, res, f'{prefix}/{n}/s{seed}', exp, enc, train, va, f'clas_{n}_s{seed}', seed, **kw)
        if not res.has(f'{lang}/tfidf/{n}'):
            b = tfidf_baseline(train, va)
            res.put(f'{lang}/tfidf/{n}', dict(accuracy=round(b['accuracy'], 4), seconds=b['seconds']))

def accs(runs, prefix): return [v['accuracy'] for k, v in runs.items() if k.rsplit('/', 1)[0] == prefix and k.rsplit('/', 1)[1].startswith('s')]

def write(res, a, stem):
    runs, m = res.d['runs'], res.d['meta']
    rows = [f"\"No wiki\" LM budget ({m['lang']}, LM size `{m['size']}` {m['dims']}, vocab {m['vocab_sz']}, bptt {m['bptt']}): one LM per "
            f"budget trained from scratch on all {m.get('unlabelled_docs')} documents of `ddtp/{m['lang']}/unlabelled.csv.gz` (95 %; 5 % held out "
            f"for perplexity), LM batch {m['lm_bs']} at lr {m['lm_lr']}, one complete one-cycle per budget; classifier seeds {m['seeds']}, "
            f"1000 labels: {m['clas_epochs']} epochs (+1 frozen epoch from an LM), 100 labels: at least {m['min_steps_100']} steps (from an LM: "
            f"after {m['min_steps_100'] // 2} frozen-encoder steps), batch {m['clas_bs']} at flat lr {m['clas_lr']}; precision {m['precision']}. {m['machine']}, {m['date']}. "
            f"Accuracy on `valid.csv`, mean ± sd over seeds." + (f" glibc malloc settings: {m['malloc_env']}." if m.get('malloc_env') else ''), '',
            '| LM epochs | LM tokens seen | LM seconds | held-out ppl | embedding topic agreement | probe 1000 | probe 100 | MultiFiT 1000 labels | MultiFiT 100 labels |',
            '|---|---|---|---|---|---|---|---|---|']
    lang = m['lang']
    for e in [0] + sorted(a.epochs):
        lm = runs.get(f'{lang}/e{e}/lm', {})
        toks = f"{e * lm['tokens_per_epoch'] / 1e6:.2f}M" if lm.get('tokens_per_epoch') else ('0' if e == 0 else '')
        ta = f"{lm['emb_topic']:.3f} (random {lm['emb_topic_random']:.3f})" if 'emb_topic' in lm else ''
        rows.append(f"| {e} | {toks} | {lm.get('seconds', '')} | {lm.get('valid_perplexity', '')} | {ta} | {lm.get('probe_1000', '')} | "
                    f"{lm.get('probe_100', '')} | {fmt(accs(runs, f'{lang}/e{e}/1000'))} | {fmt(accs(runs, f'{lang}/e{e}/100'))} |")
    tf = {n: runs.get(f'{lang}/tfidf/{n}', {}).get('accuracy') for n in (1000, 100)}
    rows += ['', f"TF-IDF + LR: 1000 labels {tf[1000]}, 100 labels {tf[100]}.",
             '', "Embedding topic agreement (bench/probe.py): for the 30 pieces most tied to each label of train.csv, the share of "
             "each one's 5 nearest pieces in the LM's input embedding (cosine) that carry the same label; embeddings that know "
             "nothing of topics give about 1/8 (the random row), 1.0 would be one topic per neighbourhood. Blank where the LM "
             "was not kept."]
    md = '\n'.join(rows) + '\n'
    from multifit_fastai.core import atomic_write_text, atomic_write_bytes
    atomic_write_text(a.out/f'{stem}.md', md)
    try: atomic_write_bytes(a.out/f'{stem}.png', plot(runs, lang, [0] + sorted(a.epochs), tf))
    except Exception as ex: print(f'no plot: {ex}')
    return md

def plot(runs, lang, budgets, tf) -> bytes:
    tok = lambda e: e * runs.get(f'{lang}/e{e}/lm', {}).get('tokens_per_epoch', 0) / 1e6
    return curve_plot({n: [(tok(e), accs(runs, f'{lang}/e{e}/{n}')) for e in budgets] for n in (1000, 100)}, tf,
                      'in-domain LM training tokens (millions)', f'"no wiki" LM budget, {lang}')

def curve_plot(series: dict, tf: dict, xlabel: str, title: str) -> bytes:
    "PNG: mean ± sd accuracy against `series[n]` = [(x, accuracies)] per label count `n`, TF-IDF as dashed lines"
    import io, matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for (n, pts), c in zip(series.items(), ('C0', 'C1')):
        pts = [(x, xs) for x, xs in pts if xs]
        if not pts: continue
        ax.errorbar([x for x, _ in pts], [statistics.mean(xs) for _, xs in pts], yerr=[statistics.stdev(xs) if len(xs) > 1 else 0 for _, xs in pts],
                    color=c, marker='o', capsize=3, label=f'MultiFiT, {n} labels')
        if tf.get(n) is not None: ax.axhline(tf[n], color=c, ls='--', lw=1, label=f'TF-IDF + LR, {n} labels')
    ax.set_xlabel(xlabel); ax.set_ylabel('accuracy on valid.csv'); ax.set_title(title)
    ax.legend(fontsize=8); fig.tight_layout()
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=100); plt.close(fig)
    return buf.getvalue()

def add_curve_args(ap, work: str, epoch_valid: int = 40, max_unlabelled: int = 0):
    "The arguments both budget curves (this one and bench/corpus_budget.py) take"
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--lang', default='de')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--labels', nargs='+', type=int, default=[1000, 100])
    ap.add_argument('--size', default='demo'); ap.add_argument('--vocab-sz', type=int, default=8000); ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--lm-bs', type=int, default=32); ap.add_argument('--lm-lr', type=float, default=1e-2)
    ap.add_argument('--clas-epochs', type=int, default=6); ap.add_argument('--clas-bs', type=int, default=18)
    ap.add_argument('--clas-lr', type=float, default=1e-2); ap.add_argument('--min-steps-100', type=int, default=200)
    ap.add_argument('--epoch-valid', type=int, default=epoch_valid, help='valid documents scored after each classifier epoch (the reported accuracy: all)')
    ap.add_argument('--max-unlabelled', type=int, default=max_unlabelled, help='in-domain documents used (0: all)')
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'auto'))
    ap.add_argument('--work', type=Path, default=HERE/'work'/work)
    ap.add_argument('--out', type=Path, default=HERE/'results')
    ap.add_argument('--quick', action='store_true', help='tiny run of every path (minutes)')

def curve_meta(a, unl, **extra) -> dict:
    "What both budget curves record about their settings and the machine"
    from multifit_fastai.presets import SIZES
    return dict(lang=a.lang, size='quick' if a.quick else a.size, dims=QUICK_DIMS if a.quick else {k: v for k, v in SIZES.get(a.size, {}).items() if k != 'vocab_sz'},
                vocab_sz=a.vocab_sz, bptt=a.bptt, lm_bs=a.lm_bs, lm_lr=a.lm_lr, unlabelled_docs=len(unl), seeds=a.seeds,
                clas_epochs=a.clas_epochs, clas_bs=a.clas_bs, clas_lr=a.clas_lr, min_steps_100=a.min_steps_100,
                precision=resolve_precision(a.precision), date=str(date.today()),
                malloc_env={k: v for k, v in os.environ.items() if k.startswith('MALLOC_')},
                machine=f'{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}', **extra)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_curve_args(ap, 'in_domain_budget')
    ap.add_argument('--epochs', nargs='+', type=int, default=[1, 2, 4], help='LM budgets in epochs over the in-domain text (0 is always run)')
    a = ap.parse_args()
    if a.quick:
        a.vocab_sz, a.max_unlabelled, a.epochs = 2000, 300, [1]
        a.clas_epochs, a.min_steps_100, a.seeds, a.work = 1, 8, a.seeds[:2], a.work.with_name('in_domain_budget_quick')
    a.mldoc, a.clas_flat = None, 1  # what bench/ddtp.py's helpers read
    stem = 'in_domain_budget_quick' if a.quick else f'in_domain_budget_{a.lang}'
    tr, t100, va, unl = load_lang(a, a.lang)
    meta = curve_meta(a, unl)
    a.out.mkdir(parents=True, exist_ok=True)
    res = Results(a.out/f'{stem}.json', meta)
    for e in [min(a.epochs), 0] + sorted(a.epochs)[1:]:  # the cheapest LM first, then the baseline, then the longer LMs
        print(f'== {a.lang}: LM budget {e} epoch(s)', flush=True)
        budget(a, res, a.lang, e, tr, t100, va, unl)
        write(res, a, stem)
    print(write(res, a, stem))

if __name__ == '__main__': main()
