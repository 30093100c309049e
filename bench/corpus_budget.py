"""Evaluation harness on ../shared/data (not a test): downstream accuracy against corpus-pretraining tokens.

MultiFiT's whole recipe at growing pretraining budgets. One LM pretraining run is streamed over all of
`corpora/<lang>.txt.gz` for --epochs epochs (a memory-mapped token corpus; checkpointed every epoch and every
--save-every steps, so `--resume` continues a stopped run: keep --work), and the LM is saved as a package at the end
of every epoch. Budget k is the LM after k corpus epochs; budget 0 is no corpus pretraining (the paper's "no wiki").
Every budget's LM is then fine-tuned on the language's in-domain documents (`ddtp/<lang>/unlabelled.csv.gz`,
--ft-epochs with its own one-cycle, from scratch for budget 0), probed, and the classifier is trained with --seeds
at 1000 labels (train.csv) and 100 labels (train_100.csv; at least --min-steps-100 steps after M/2 frozen-encoder
steps), as bench/in_domain_budget.py does. One SentencePiece tokenizer for every budget, trained on the corpus and
the in-domain text. The LMs after epoch k < --epochs are snapshots from inside one schedule (their learning rate had
not annealed); the in-domain fine-tuning after them anneals each with its own schedule.

Accuracy on valid.csv, mean +- sd over seeds, TF-IDF + LR beside it. Resumable: finished entries are kept in the JSON.

Run:   OMP_NUM_THREADS=2 .venv/bin/python bench/corpus_budget.py --lang de --epochs 3 [--resume]
Writes bench/results/corpus_budget_<lang>.{json,md,png} (or corpus_budget_quick.* with --quick).
"""
import argparse, os, shutil, statistics, time
from datetime import date
from pathlib import Path
import torch
from fastai.callback.core import Callback
from multifit_fastai.core import read_lines, atomic_write_text, atomic_write_bytes
from multifit_fastai.learner import save_pretrained
from multifit_fastai.package import load_package
from multifit_fastai.pipeline import tfidf_baseline
from multifit_fastai.precision import resolve_precision
from ddtp import Results, load_lang, classifier_run, experiment, fmt, QUICK_DIMS
from probe import probe_encoder, encoder_of, embedding_topic_agreement
from machine import cpu_model

HERE = Path(__file__).resolve().parent

class EpochPackages(Callback):
    "Save the LM as a package `path/epoch<k>` after each of its epochs (kept if it exists: a resumed run skips it)"
    order, run_valid = 80, False
    def __init__(self, path): self.path = Path(path)
    def after_epoch(self):
        out = self.path/f'epoch{self.epoch + 1}'
        if not (out/'config.json').is_file(): save_pretrained(self.learn, out)

def pretrain(a, lang, unl):
    "The tokenizer and the LM pretraining run over the whole corpus (resumable), an LM package per epoch"
    base = experiment(a, a.work/lang/'pretrain', lang, {})
    corpus = a.corpus
    if not (base.stage_path('tokenizer')/'tokenizer.json').is_file():
        base.train_tokenizer(list(read_lines(corpus, max_lines=a.max_lines or None)) + unl)
    if not (a.work/lang/'snapshots'/f'epoch{a.epochs}'/'config.json').is_file():
        base.pretrain_lm([corpus], stream=True, n_workers=1, epochs=a.epochs, bs=a.lm_bs, lr=a.lm_lr, save_every=a.save_every,
                         resume=a.resume, cbs=[EpochPackages(a.work/lang/'snapshots')], precision=a.precision)
    return base

def lm_for(a, lang, k, base, unl):
    "Budget `k`'s experiment: the epoch-k LM (none for k = 0) fine-tuned on the in-domain text"
    e = experiment(a, a.work/lang/f'c{k}', lang, {}, share_from=base)
    if k and not e.stage_path('pretrain').is_dir(): shutil.copytree(a.work/lang/'snapshots'/f'epoch{k}', e.stage_path('pretrain'))
    e.finetune_lm(unl, epochs=a.ft_epochs, bs=a.lm_bs, lr=a.ft_lr if k else a.lm_lr, first_epoch_last_group=False, precision=a.precision)
    return e

def budget(a, res, lang, k, base, tr, t100, va, unl, tokens_per_epoch):
    keys = [f'{lang}/c{k}/lm'] + [f'{lang}/c{k}/{n}/s{s}' for n in a.labels for s in a.seeds]
    if all(res.has(x) for x in keys): return
    exp = lm_for(a, lang, k, base, unl)
    if not res.has(f'{lang}/c{k}/lm'):
        h, pkg = exp.history.get('finetune_lm', {}), load_package(exp.stage_path('finetune_lm'))
        pr, ta = probe_encoder(encoder_of(pkg), pkg.tokenizer, tr, t100, va), embedding_topic_agreement(pkg, tr)
        res.put(f'{lang}/c{k}/lm', dict(corpus_epochs=k, corpus_tokens=k * tokens_per_epoch, ft_seconds=h.get('seconds'),
                ft_valid_perplexity=round(h.get('valid_perplexity'), 2), ft_tokens_per_epoch=h.get('tokens_per_epoch'),
                probe_1000=round(pr[1000], 4), probe_100=round(pr[100], 4), emb_topic=ta['trained'], emb_topic_random=ta['random']))
    for n, train, kw in ((1000, tr, {}), (100, t100, dict(min_steps=a.min_steps_100, head_steps=a.min_steps_100 // 2))):
        if n not in a.labels: continue
        for seed in a.seeds:
            classifier_run(a, res, f'{lang}/c{k}/{n}/s{seed}', exp, 'auto', train, va, f'clas_{n}_s{seed}', seed, **kw)
        if not res.has(f'{lang}/tfidf/{n}'):
            b = tfidf_baseline(train, va)
            res.put(f'{lang}/tfidf/{n}', dict(accuracy=round(b['accuracy'], 4), seconds=b['seconds']))

def accs(runs, prefix): return [v['accuracy'] for k, v in runs.items() if k.rsplit('/', 1)[0] == prefix and k.rsplit('/', 1)[1].startswith('s')]

def write(res, a, stem):
    runs, m, lang = res.d['runs'], res.d['meta'], res.d['meta']['lang']
    p = m.get('pretrain', {})
    rows = [f"Corpus-pretraining budget ({lang}, LM size `{m['size']}` {m['dims']}, vocab {m['vocab_sz']}, bptt {m['bptt']}): one "
            f"pretraining run over all of `{m['corpus']}` ({p.get('tokens_per_epoch', 0) / 1e6:.2f}M tokens an epoch, "
            f"{m['epochs']} epochs, batch {m['lm_bs']} at lr {m['lm_lr']}, one-cycle; {p.get('seconds', '?')} s, final corpus "
            f"valid perplexity {p.get('valid_perplexity', '?')}), the LM after each epoch then fine-tuned {m['ft_epochs']} epochs "
            f"on {m['unlabelled_docs']} in-domain documents of `ddtp/{lang}/unlabelled.csv.gz` (95 %; 5 % held out), budget 0 "
            f"trained on them from scratch (\"no wiki\"); classifier seeds {m['seeds']}, 1000 labels: {m['clas_epochs']} epochs "
            f"(+1 frozen epoch), 100 labels: at least {m['min_steps_100']} steps after {m['min_steps_100'] // 2} frozen-encoder "
            f"steps, batch {m['clas_bs']} at flat lr {m['clas_lr']}; precision {m['precision']}. {m['machine']}, {m['date']}. "
            f"Accuracy on `valid.csv`, mean ± sd over seeds.", '',
            '| corpus epochs | corpus tokens | in-domain ppl after fine-tuning | embedding topic agreement | probe 1000 | probe 100 | MultiFiT 1000 labels | MultiFiT 100 labels |',
            '|---|---|---|---|---|---|---|---|']
    for k in range(a.epochs + 1):
        lm = runs.get(f'{lang}/c{k}/lm', {})
        ta = f"{lm['emb_topic']:.3f} (random {lm['emb_topic_random']:.3f})" if 'emb_topic' in lm else ''
        rows.append(f"| {k} | {lm.get('corpus_tokens', 0) / 1e6:.2f}M | {lm.get('ft_valid_perplexity', '')} | {ta} | {lm.get('probe_1000', '')} | "
                    f"{lm.get('probe_100', '')} | {fmt(accs(runs, f'{lang}/c{k}/1000'))} | {fmt(accs(runs, f'{lang}/c{k}/100'))} |")
    tf = {n: runs.get(f'{lang}/tfidf/{n}', {}).get('accuracy') for n in (1000, 100)}
    rows += ['', f"TF-IDF + LR: 1000 labels {tf[1000]}, 100 labels {tf[100]}. Embedding topic agreement: see "
             "in_domain_budget_de.md (about 1/8 for embeddings without topic structure)."]
    md = '\n'.join(rows) + '\n'
    atomic_write_text(a.out/f'{stem}.md', md)
    try: atomic_write_bytes(a.out/f'{stem}.png', plot(runs, lang, a.epochs, tf))
    except Exception as ex: print(f'no plot: {ex}')
    return md

def plot(runs, lang, epochs, tf) -> bytes:
    import io, matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, c in ((1000, 'C0'), (100, 'C1')):
        pts = [(runs.get(f'{lang}/c{k}/lm', {}).get('corpus_tokens', 0) / 1e6, accs(runs, f'{lang}/c{k}/{n}')) for k in range(epochs + 1)]
        pts = [(t, xs) for t, xs in pts if xs]
        if not pts: continue
        ax.errorbar([t for t, _ in pts], [statistics.mean(xs) for _, xs in pts], yerr=[statistics.stdev(xs) if len(xs) > 1 else 0 for _, xs in pts],
                    color=c, marker='o', capsize=3, label=f'MultiFiT, {n} labels')
        if tf.get(n) is not None: ax.axhline(tf[n], color=c, ls='--', lw=1, label=f'TF-IDF + LR, {n} labels')
    ax.set_xlabel('corpus pretraining tokens (millions), then in-domain fine-tuning'); ax.set_ylabel('accuracy on valid.csv')
    ax.set_title(f'corpus-pretraining budget, {lang}'); ax.legend(fontsize=8); fig.tight_layout()
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=100); plt.close(fig)
    return buf.getvalue()

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--lang', default='de')
    ap.add_argument('--corpus', type=Path, help='pretraining corpus, one paragraph per line (default: corpora/<lang>.txt.gz)')
    ap.add_argument('--epochs', type=int, default=3, help='corpus epochs of the pretraining run: budgets 0, 1, ..., epochs')
    ap.add_argument('--resume', action='store_true', help='continue a stopped pretraining run from its last checkpoint in --work')
    ap.add_argument('--save-every', type=int, default=500, help='also checkpoint every N optimizer steps')
    ap.add_argument('--max-lines', type=int, default=0, help='corpus lines the tokenizer is trained on, with the in-domain text (0: all)')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--labels', nargs='+', type=int, default=[1000, 100])
    ap.add_argument('--size', default='demo'); ap.add_argument('--vocab-sz', type=int, default=8000); ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--lm-bs', type=int, default=32); ap.add_argument('--lm-lr', type=float, default=1e-2)
    ap.add_argument('--ft-epochs', type=int, default=2); ap.add_argument('--ft-lr', type=float, default=5e-3)
    ap.add_argument('--clas-epochs', type=int, default=6); ap.add_argument('--clas-bs', type=int, default=18)
    ap.add_argument('--clas-lr', type=float, default=1e-2); ap.add_argument('--min-steps-100', type=int, default=200)
    ap.add_argument('--epoch-valid', type=int, default=60, help='valid documents scored after each classifier epoch (the reported accuracy: all)')
    ap.add_argument('--max-unlabelled', type=int, default=4000, help='in-domain documents for the fine-tuning (0: all)')
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'auto'))
    ap.add_argument('--work', type=Path, default=HERE/'work'/'corpus_budget')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    ap.add_argument('--quick', action='store_true', help='tiny run of every path (minutes; a corpus cut to --max-lines)')
    a = ap.parse_args()
    if a.quick:
        a.vocab_sz, a.max_unlabelled, a.epochs, a.ft_epochs, a.max_lines = 2000, 300, 1, 1, 1500
        a.clas_epochs, a.min_steps_100, a.seeds, a.work = 1, 8, a.seeds[:2], a.work.with_name('corpus_budget_quick')
    a.mldoc, a.clas_flat = None, 1  # what bench/ddtp.py's helpers read
    from multifit_fastai.presets import SIZES
    stem = 'corpus_budget_quick' if a.quick else f'corpus_budget_{a.lang}'
    tr, t100, va, unl = load_lang(a, a.lang)
    a.corpus = a.corpus or a.data/'corpora'/f'{a.lang}.txt.gz'
    if a.quick:  # the corpus's first --max-lines lines, so that every path runs in minutes
        small = a.work/f'{a.lang}_corpus.txt.gz'
        if not small.is_file():
            import gzip
            atomic_write_bytes(small, gzip.compress(''.join(l + '\n' for l in read_lines(a.corpus, max_lines=a.max_lines)).encode()))
        a.corpus = small
    meta = dict(lang=a.lang, size='quick' if a.quick else a.size, dims=QUICK_DIMS if a.quick else {k: v for k, v in SIZES.get(a.size, {}).items() if k != 'vocab_sz'},
                vocab_sz=a.vocab_sz, bptt=a.bptt, epochs=a.epochs, lm_bs=a.lm_bs, lm_lr=a.lm_lr, ft_epochs=a.ft_epochs, ft_lr=a.ft_lr,
                corpus=a.corpus.name, unlabelled_docs=len(unl), seeds=a.seeds, clas_epochs=a.clas_epochs, clas_bs=a.clas_bs, clas_lr=a.clas_lr,
                min_steps_100=a.min_steps_100, precision=resolve_precision(a.precision), date=str(date.today()),
                malloc_env={k: v for k, v in os.environ.items() if k.startswith('MALLOC_')},
                machine=f'{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}')
    a.out.mkdir(parents=True, exist_ok=True)
    res = Results(a.out/f'{stem}.json', meta)
    t0 = time.time()
    base = pretrain(a, a.lang, unl)
    h = base.history.get('pretrain', {})
    if h and 'pretrain' not in res.d['meta']:
        res.d['meta']['pretrain'] = dict(seconds=h.get('seconds', round(time.time() - t0, 1)), steps=h.get('steps'),
                                         tokens_per_epoch=h.get('tokens_per_epoch'), valid_perplexity=round(h.get('valid_perplexity'), 2))
    tpe = res.d['meta'].get('pretrain', {}).get('tokens_per_epoch') or 0
    for k in range(a.epochs + 1):
        print(f'== {a.lang}: corpus budget {k} epoch(s)', flush=True)
        budget(a, res, a.lang, k, base, tr, t100, va, unl, tpe)
        write(res, a, stem)
    print(write(res, a, stem))

if __name__ == '__main__': main()
