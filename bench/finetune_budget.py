"""Evaluation harness on ../shared/data/ddtp (not a test): the in-domain fine-tuning budget after corpus pretraining.

bench/corpus_budget.py fine-tunes every corpus LM for 2 epochs on at most 4000 in-domain documents; the paper
fine-tunes for 20 epochs on the task's whole document collection. This takes one corpus-pretrained LM (an experiment
folder of bench/corpus_budget.py with `lm_pretrained/` and `tokenizer/`) and fine-tunes it again per setting
`E:D` (E epochs on the first D documents of `ddtp/<lang>/unlabelled.csv.gz`, D = `all` for every one of them), each
with its own one-cycle, then probes it and trains the classifier with --seeds at 1000 and 100 labels exactly as
bench/corpus_budget.py does. Every setting holds out the same documents for the perplexity (the last --held-out of
the file, never trained on), so perplexities compare across settings.

`--baseline` names bench/corpus_budget.py's JSON of the same LM: its row (2 epochs, 4000 documents; same tokenizer,
seeds and classifier recipe) is shown first for reference; its perplexity was held out differently.

Accuracy on valid.csv, mean +- sd over seeds, TF-IDF + LR beside it. Resumable: finished entries are kept in the JSON.

Run:   OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_budget.py --lang fr --lm-exp bench/work/corpus_budget_e3/fr/c3 \\
           --settings 6:4000 2:all 6:all --min-steps-100 120 --baseline bench/results/corpus_budget_fr_e3/corpus_budget_fr.json
Writes bench/results/finetune_budget_<lang>.{json,md}.
"""
import argparse, json
from pathlib import Path
from multifit_fastai.core import atomic_write_text
from multifit_fastai.package import load_package
from ddtp import Results, load_lang, experiment, fmt
from probe import probe_encoder, encoder_of
from in_domain_budget import classifiers, accs, add_curve_args, curve_meta

def parse_setting(s: str) -> tuple:
    "'6:4000' -> (6, 4000); '2:all' -> (2, 0) (0: every document)"
    e, _, d = s.partition(':')
    if not (e.isdigit() and int(e) > 0 and (d == 'all' or (d.isdigit() and int(d) > 0))):
        raise argparse.ArgumentTypeError(f"setting {s!r}: expected E:D, E epochs > 0 and D documents > 0 or 'all' (e.g. 6:4000, 2:all)")
    return int(e), 0 if d == 'all' else int(d)

def setting_name(e: int, d: int) -> str: return f"ft{e}_{'all' if d == 0 else d}"

def split_docs(unl: list, docs: int, held_out: int) -> tuple:
    "(train, held-out): the held-out documents are always the last `held_out`; train the first `docs` of the rest (0: all)"
    rest, held = unl[:-held_out], unl[-held_out:]
    return (rest if docs == 0 else rest[:docs]), held

def lm_for(a, lang, e, d, unl):
    "Setting (e, d)'s experiment: the corpus LM of --lm-exp fine-tuned e epochs on d documents"
    src = experiment(a, a.lm_exp, lang, {})
    exp = experiment(a, a.work/lang/setting_name(e, d), lang, {}, share_from=src, stages=('pretrain',))
    train, held = split_docs(unl, d, a.held_out)
    exp.finetune_lm(train, valid=held, epochs=e, bs=a.lm_bs, lr=a.ft_lr, first_epoch_last_group=False, precision=a.precision)
    return exp

def run_setting(a, res, lang, e, d, tr, t100, va, unl):
    name = setting_name(e, d)
    keys = [f'{lang}/{name}/lm'] + [f'{lang}/{name}/{n}/s{s}' for n in a.labels for s in a.seeds]
    if all(res.has(k) for k in keys): return
    exp = lm_for(a, lang, e, d, unl)
    if not res.has(f'{lang}/{name}/lm'):
        h, pkg = exp.history.get('finetune_lm', {}), load_package(exp.stage_path('finetune_lm'))
        pr = probe_encoder(encoder_of(pkg), pkg.tokenizer, tr, t100, va)
        res.put(f'{lang}/{name}/lm', dict(ft_epochs=e, docs=h.get('train_texts'), seconds=h.get('seconds'), steps=h.get('steps'),
                tokens_per_epoch=h.get('tokens_per_epoch'), valid_perplexity=round(h.get('valid_perplexity'), 2),
                probe_1000=round(pr[1000], 4), probe_100=round(pr[100], 4)))
    classifiers(a, res, f'{lang}/{name}', exp, 'auto', tr, t100, va)

def baseline_row(path, lang) -> list:
    "bench/corpus_budget.py's row for the longest budget in `path` (2 epochs on <= 4000 documents)"
    if not path or not Path(path).is_file(): return []
    d = json.loads(Path(path).read_text())
    runs, k = d['runs'], d['meta']['epochs']
    lm = runs.get(f'{lang}/c{k}/lm', {})
    if not lm: return []
    return [f"| {d['meta']['ft_epochs']} (bench/corpus_budget.py) | {d['meta']['unlabelled_docs']} | "
            f"{d['meta']['ft_epochs'] * lm.get('ft_tokens_per_epoch', 0) / 1e6:.2f}M | {lm.get('ft_seconds', '')} | "
            f"({lm.get('ft_valid_perplexity', '')}) | {lm.get('probe_1000', '')} | {lm.get('probe_100', '')} | "
            f"{fmt(accs(runs, f'{lang}/c{k}/1000'))} | {fmt(accs(runs, f'{lang}/c{k}/100'))} |"]

def write(res, a, stem, settings):
    runs, m = res.d['runs'], res.d['meta']
    lang = m['lang']
    rows = [f"In-domain fine-tuning budget after corpus pretraining ({lang}, LM `{m['lm_exp']}`, size `{m['size']}` {m['dims']}, "
            f"vocab {m['vocab_sz']}, bptt {m['bptt']}): the corpus LM fine-tuned E epochs on the first D documents of "
            f"`ddtp/{lang}/unlabelled.csv.gz` ({m['unlabelled_docs']} in all; the last {m['held_out']} held out for perplexity), "
            f"batch {m['lm_bs']} at lr {m['ft_lr']}, one one-cycle per setting; classifier seeds {m['seeds']}, 1000 labels: "
            f"{m['clas_epochs']} epochs (+1 frozen epoch), 100 labels: at least {m['min_steps_100']} steps after "
            f"{m['min_steps_100'] // 2} frozen-encoder steps, batch {m['clas_bs']} at flat lr {m['clas_lr']}; precision "
            f"{m['precision']}. {m['machine']}, {m['date']}. Accuracy on `valid.csv`, mean ± sd over seeds.", '',
            '| fine-tuning epochs E | documents D | tokens seen | seconds | held-out ppl | probe 1000 | probe 100 | MultiFiT 1000 labels | MultiFiT 100 labels |',
            '|---|---|---|---|---|---|---|---|---|'] + baseline_row(a.baseline, lang)
    for e, d in settings:
        name = setting_name(e, d)
        lm = runs.get(f'{lang}/{name}/lm')
        if not lm: continue
        rows.append(f"| {e} | {lm['docs']} | {e * lm['tokens_per_epoch'] / 1e6:.2f}M | {lm['seconds']} | {lm['valid_perplexity']} | "
                    f"{lm['probe_1000']} | {lm['probe_100']} | {fmt(accs(runs, f'{lang}/{name}/1000'))} | {fmt(accs(runs, f'{lang}/{name}/100'))} |")
    tf = {n: runs.get(f'{lang}/tfidf/{n}', {}).get('accuracy') for n in (1000, 100)}
    rows += ['', f"TF-IDF + LR: 1000 labels {tf[1000]}, 100 labels {tf[100]}. The first row's perplexity (in brackets) was held "
             "out from its own 4000 documents, not from the documents the other rows hold out."]
    md = '\n'.join(rows) + '\n'
    atomic_write_text(a.out/f'{stem}.md', md)
    return md

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_curve_args(ap, 'finetune_budget', epoch_valid=60)
    ap.add_argument('--lm-exp', type=Path, required=True, help="bench/corpus_budget.py's experiment of one budget (lm_pretrained/, tokenizer/)")
    ap.add_argument('--settings', nargs='+', type=parse_setting, default=[(6, 4000), (2, 0)], help='E:D, E fine-tuning epochs on the first D documents (D: a number or all)')
    ap.add_argument('--ft-lr', type=float, default=5e-3); ap.add_argument('--held-out', type=int, default=200)
    ap.add_argument('--baseline', type=Path, help="bench/corpus_budget.py's JSON for the same LM (its row is shown first)")
    a = ap.parse_args()
    if a.held_out < 1: ap.error('--held-out: at least 1 document is needed for the held-out perplexity')
    if a.quick:  # the LM of bench/corpus_budget.py --quick
        a.seeds, a.clas_epochs, a.min_steps_100, a.vocab_sz = a.seeds[:2], 1, 8, 2000
        a.max_unlabelled, a.held_out, a.work = 400, 40, a.work.with_name('finetune_budget_quick')
    a.mldoc, a.clas_flat = None, 1  # what bench/ddtp.py's helpers read
    settings = a.settings
    tr, t100, va, unl = load_lang(a, a.lang)
    stem = 'finetune_budget_quick' if a.quick else f'finetune_budget_{a.lang}'
    a.out.mkdir(parents=True, exist_ok=True)
    res = Results(a.out/f'{stem}.json', curve_meta(a, unl, lm_exp=str(a.lm_exp), ft_lr=a.ft_lr, held_out=a.held_out))
    for e, d in settings:
        print(f'== {a.lang}: fine-tuning {e} epoch(s) on {d or "all"} documents', flush=True)
        run_setting(a, res, a.lang, e, d, tr, t100, va, unl)
        res.refresh(); write(res, a, stem, settings)
    print(write(res, a, stem, settings))

if __name__ == '__main__': main()
