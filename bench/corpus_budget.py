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
  or, on two cores, the pretraining beside the evaluation (each budget starts when its LM snapshot is there):
       OMP_NUM_THREADS=1 .venv/bin/python bench/corpus_budget.py --lang ja --epochs 3 --stage pretrain
       OMP_NUM_THREADS=1 .venv/bin/python bench/corpus_budget.py --lang ja --epochs 3 --stage eval
Writes bench/results/corpus_budget_<lang>.{json,md,png} (or corpus_budget_quick.* with --quick).
"""
import argparse, shutil, time
from pathlib import Path
from fastai.callback.core import Callback
from multifit_fastai.core import read_lines, atomic_write_text, atomic_write_bytes
from multifit_fastai.learner import save_pretrained
from multifit_fastai.package import load_package
from ddtp import Results, load_lang, experiment, fmt
from probe import probe_encoder, encoder_of, embedding_topic_agreement
from in_domain_budget import classifiers, accs, curve_plot, add_curve_args, curve_meta

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

def wait_for(path, what, every=30):
    "Block until `path` exists (another process is writing it: `--stage eval` beside `--stage pretrain`)"
    if not path.exists(): print(f'waiting for {what} ({path})', flush=True)
    while not path.exists(): time.sleep(every)

def lm_for(a, lang, k, base, unl):
    "Budget `k`'s experiment: the epoch-k LM (none for k = 0) fine-tuned on the in-domain text"
    wait_for(base.stage_path('tokenizer')/'tokenizer.json', 'the tokenizer')
    if k: wait_for(a.work/lang/'snapshots'/f'epoch{k}'/'config.json', f'the LM after corpus epoch {k}')
    e = experiment(a, a.work/lang/f'c{k}', lang, {}, share_from=base)
    if k and not e.stage_path('pretrain').is_dir(): shutil.copytree(a.work/lang/'snapshots'/f'epoch{k}', e.stage_path('pretrain'))
    e.finetune_lm(unl, epochs=a.ft_epochs, bs=a.lm_bs, lr=a.ft_lr if k else a.lm_lr, first_epoch_last_group=False, precision=a.precision)
    return e

def budget(a, res, lang, k, base, tr, t100, va, unl):
    keys = [f'{lang}/c{k}/lm'] + [f'{lang}/c{k}/{n}/s{s}' for n in a.labels for s in a.seeds]
    if all(res.has(x) for x in keys): return
    exp = lm_for(a, lang, k, base, unl)
    if not res.has(f'{lang}/c{k}/lm'):
        h, pkg = exp.history.get('finetune_lm', {}), load_package(exp.stage_path('finetune_lm'))
        pr, ta = probe_encoder(encoder_of(pkg), pkg.tokenizer, tr, t100, va), embedding_topic_agreement(pkg, tr)
        res.put(f'{lang}/c{k}/lm', dict(corpus_epochs=k, ft_seconds=h.get('seconds'),
                ft_valid_perplexity=round(h.get('valid_perplexity'), 2), ft_tokens_per_epoch=h.get('tokens_per_epoch'),
                probe_1000=round(pr[1000], 4), probe_100=round(pr[100], 4), emb_topic=ta['trained'], emb_topic_random=ta['random']))
    classifiers(a, res, f'{lang}/c{k}', exp, 'auto', tr, t100, va)

def write(res, a, stem):
    runs, m, lang = res.d['runs'], res.d['meta'], res.d['meta']['lang']
    p = m.get('pretrain', {})
    rows = [f"Corpus-pretraining budget ({lang}, LM size `{m['size']}` {m['dims']}, vocab {m['vocab_sz']}, bptt {m['bptt']}): one "
            f"pretraining run over all of `{m['corpus']}` ({p.get('tokens_per_epoch', 0) / 1e6:.2f}M tokens an epoch, "
            f"{m['epochs']} epochs, batch {m['lm_bs']} at lr {m['lm_lr']}, one-cycle; {p.get('seconds', '?')} s in its last process (a resumed run counts only that), final corpus "
            f"valid perplexity {p.get('valid_perplexity', '?')}), the LM after each epoch then fine-tuned {m['ft_epochs']} epochs "
            f"on {m['unlabelled_docs']} in-domain documents of `ddtp/{lang}/unlabelled.csv.gz` (95 %; 5 % held out), budget 0 "
            f"trained on them from scratch (\"no wiki\"); classifier seeds {m['seeds']}, 1000 labels: {m['clas_epochs']} epochs "
            f"(+1 frozen epoch), 100 labels: at least {m['min_steps_100']} steps after {m['min_steps_100'] // 2} frozen-encoder "
            f"steps, batch {m['clas_bs']} at flat lr {m['clas_lr']}; precision {m['precision']}. {m['machine']}, {m['date']}. "
            f"Accuracy on `valid.csv`, mean ± sd over seeds.", '',
            '| corpus epochs | corpus tokens | in-domain ppl after fine-tuning | embedding topic agreement | probe 1000 | probe 100 | MultiFiT 1000 labels | MultiFiT 100 labels |',
            '|---|---|---|---|---|---|---|---|']
    for k in done_budgets(runs, lang, a.epochs):
        lm = runs.get(f'{lang}/c{k}/lm', {})
        ta = f"{lm['emb_topic']:.3f} (random {lm['emb_topic_random']:.3f})" if 'emb_topic' in lm else ''
        rows.append(f"| {k} | {corpus_tokens(runs, m, lang, k) / 1e6:.2f}M | {lm.get('ft_valid_perplexity', '')} | {ta} | {lm.get('probe_1000', '')} | "
                    f"{lm.get('probe_100', '')} | {fmt(accs(runs, f'{lang}/c{k}/1000'))} | {fmt(accs(runs, f'{lang}/c{k}/100'))} |")
    tf = {n: runs.get(f'{lang}/tfidf/{n}', {}).get('accuracy') for n in (1000, 100)}
    rows += ['', f"TF-IDF + LR: 1000 labels {tf[1000]}, 100 labels {tf[100]}. Embedding topic agreement: see "
             "in_domain_budget_de.md (about 1/8 for embeddings without topic structure)."]
    md = '\n'.join(rows) + '\n'
    atomic_write_text(a.out/f'{stem}.md', md)
    try: atomic_write_bytes(a.out/f'{stem}.png', plot(runs, m, lang, a.epochs, tf))
    except Exception as ex: print(f'no plot: {ex}')
    return md

def done_budgets(runs, lang, epochs) -> list:
    "The budgets 0 ... epochs with an evaluated LM (a run restricted by --budgets has only some)"
    return [k for k in range(epochs + 1) if f'{lang}/c{k}/lm' in runs]

def plot(runs, meta, lang, epochs, tf) -> bytes:
    tok = lambda k: corpus_tokens(runs, meta, lang, k) / 1e6
    return curve_plot({n: [(tok(k), accs(runs, f'{lang}/c{k}/{n}')) for k in done_budgets(runs, lang, epochs)] for n in (1000, 100)}, tf,
                      'corpus pretraining tokens (millions), then in-domain fine-tuning', f'corpus-pretraining budget, {lang}')

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_curve_args(ap, 'corpus_budget', epoch_valid=60, max_unlabelled=4000)
    ap.add_argument('--corpus', type=Path, help='pretraining corpus, one paragraph per line (default: corpora/<lang>.txt.gz)')
    ap.add_argument('--epochs', type=int, default=3, help='corpus epochs of the pretraining run: budgets 0, 1, ..., epochs')
    ap.add_argument('--resume', action='store_true', help='continue a stopped pretraining run from its last checkpoint in --work')
    ap.add_argument('--save-every', type=int, default=500, help='also checkpoint every N optimizer steps')
    ap.add_argument('--max-lines', type=int, default=0, help='corpus lines the tokenizer is trained on, with the in-domain text (0: all)')
    ap.add_argument('--ft-epochs', type=int, default=2); ap.add_argument('--ft-lr', type=float, default=5e-3)
    ap.add_argument('--stage', default='all', choices=('all', 'pretrain', 'eval'),
                    help='pretrain: only the tokenizer and the pretraining run; eval: only the budgets, each waiting for its '
                         'LM snapshot (run beside a pretrain process to use both cores)')
    ap.add_argument('--budgets', nargs='+', type=int, help='budgets (corpus epochs) to evaluate (default: 0 ... --epochs)')
    a = ap.parse_args()
    if a.quick:
        a.vocab_sz, a.max_unlabelled, a.epochs, a.ft_epochs, a.max_lines = 2000, 300, 1, 1, 1500
        a.clas_epochs, a.min_steps_100, a.seeds, a.work = 1, 8, a.seeds[:2], a.work.with_name('corpus_budget_quick')
    a.mldoc, a.clas_flat = None, 1  # what bench/ddtp.py's helpers read
    stem = 'corpus_budget_quick' if a.quick else f'corpus_budget_{a.lang}'
    tr, t100, va, unl = load_lang(a, a.lang)
    a.corpus = a.corpus or a.data/'corpora'/f'{a.lang}.txt.gz'
    if a.quick:  # the corpus's first --max-lines lines, so that every path runs in minutes
        small = a.work/f'{a.lang}_corpus.txt.gz'
        if not small.is_file():
            import gzip
            atomic_write_bytes(small, gzip.compress(''.join(l + '\n' for l in read_lines(a.corpus, max_lines=a.max_lines)).encode()))
        a.corpus = small
    meta = curve_meta(a, unl, epochs=a.epochs, ft_epochs=a.ft_epochs, ft_lr=a.ft_lr, corpus=a.corpus.name)
    a.out.mkdir(parents=True, exist_ok=True)
    res = Results(a.out/f'{stem}.json', meta)
    base = pretrain(a, a.lang, unl) if a.stage != 'eval' else experiment(a, a.work/a.lang/'pretrain', a.lang, {})
    pretrain_meta(res, base)
    if a.stage == 'pretrain': return
    for k in (range(a.epochs + 1) if a.budgets is None else a.budgets):
        print(f'== {a.lang}: corpus budget {k} epoch(s)', flush=True)
        budget(a, res, a.lang, k, base, tr, t100, va, unl)
        pretrain_meta(res, base); res.refresh(); write(res, a, stem)
    print(write(res, a, stem))

def pretrain_meta(res, base):
    "The pretraining run's figures in the results' meta, once it has finished (possibly in another process)"
    h = base._read_history().get('pretrain', {})
    if h and 'pretrain' not in res.d['meta']:
        res.put_meta(pretrain=dict(seconds=h.get('seconds'), steps=h.get('steps'), tokens_per_epoch=h.get('tokens_per_epoch'),
                                   valid_perplexity=round(h.get('valid_perplexity'), 2)))

def corpus_tokens(runs, meta, lang, k) -> float:
    "Corpus tokens behind budget `k`: k epochs of the finished pretraining run (entries of older runs carry their own)"
    return runs.get(f'{lang}/c{k}/lm', {}).get('corpus_tokens') or k * meta.get('pretrain', {}).get('tokens_per_epoch', 0)

if __name__ == '__main__': main()
