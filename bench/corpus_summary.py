"""Summary across languages (not a test): MultiFiT with and without corpus pretraining against TF-IDF + LR.

Reads the seeded results that `bench/corpus_budget.py` wrote (`corpus_budget_<lang>.json`, and `corpus_budget_<lang>_e<k>/`
for separate k-epoch runs) and, for languages without a corpus-budget run, the harness's `ddtp_all/ddtp.json`. Per language
and label count: the classifier from an LM trained on the in-domain text alone (budget 0, "no wiki"), the one from the
longest *complete* corpus schedule (the last epoch of a run: mid-schedule snapshots are left out), their difference,
and TF-IDF + LR. Accuracy on valid.csv, mean +- sd over seeds; a difference counts as a gain only when it exceeds the
larger of the two sds.

Run:   .venv/bin/python bench/corpus_summary.py     # -> bench/results/corpus_summary.md
"""
import json, statistics
from pathlib import Path
from multifit_fastai.core import atomic_write_text
from in_domain_budget import accs as seeds
from ddtp import fmt

HERE = Path(__file__).resolve().parent
RES = HERE/'results'
LANGS = ['de', 'ja', 'zh', 'es', 'fr', 'it', 'ru', 'en']

def ms(xs): return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.) if xs else None
def load(p): return json.loads(p.read_text()) if p.is_file() else None

def corpus_files(lang) -> list:
    "The corpus-budget results of `lang`: `corpus_budget_<lang>.json`, then the separate schedules `corpus_budget_<lang>_e<k>/`"
    runs = sorted(RES.glob(f'corpus_budget_{lang}_e*/corpus_budget_{lang}.json'), key=lambda p: int(p.parent.name.rsplit('_e', 1)[1]))
    return [d for d in [load(RES/f'corpus_budget_{lang}.json')] + [load(p) for p in runs] if d]

def corpus_rows(lang) -> dict:
    "{'none', 'pre', 'tfidf', 'epochs', 'tokens', 'source'} from the corpus-budget runs of `lang`, or None"
    files = corpus_files(lang)
    full = [(d['meta']['epochs'], d['meta'].get('pretrain', {}).get('tokens_per_epoch', 0), i) for i, d in enumerate(files)
            if f"{lang}/c{d['meta']['epochs']}/lm" in d['runs']]
    if not full: return None
    ep, tpe, i = max(full)
    runs = {k: v for d in files for k, v in d['runs'].items()} | files[i]['runs']  # the longest schedule's own rows first
    if f'{lang}/c0/lm' not in runs: return None
    r = dict(epochs=ep, tokens=ep * tpe, source='corpus_budget')
    for n in (1000, 100):
        r[n] = dict(none=seeds(runs, f'{lang}/c0/{n}'), pre=seeds(runs, f'{lang}/c{ep}/{n}'),
                    tfidf=runs.get(f'{lang}/tfidf/{n}', {}).get('accuracy'))
    return r

def harness_rows(lang, d) -> dict:
    "The same figures from bench/ddtp.py's seeded rows (a small corpus LM: first 20k paragraphs, 1 epoch)"
    runs = d['runs']
    if not seeds(runs, f'{lang}/subword/pretrained/100'): return None
    r = dict(epochs=d['meta'].get('pretrain_epochs'), tokens=None, source='ddtp_all')
    for n in (1000, 100):
        r[n] = dict(none=seeds(runs, f'{lang}/subword/no_pretraining/{n}'), pre=seeds(runs, f'{lang}/subword/pretrained/{n}'),
                    tfidf=runs.get(f'{lang}/subword/tfidf_lr/{n}', {}).get('accuracy'))
    return r

def diff(a, b):
    "`b - a` in points, and whether it exceeds the larger sd"
    if not (a and b): return '', None
    (ma, sa), (mb, sb) = ms(a), ms(b)
    d = 100 * (mb - ma)
    return f'{d:+.1f}', abs(d) > 100 * max(sa, sb)

def table(rows) -> list:
    out = ['| lang | LM | labels | no corpus ("no wiki") | corpus-pretrained | gain (points) | TF-IDF + LR | MultiFiT − TF-IDF |',
           '|---|---|---|---|---|---|---|---|']
    for lang, r in rows.items():
        lm = (f"{r['epochs']}-epoch corpus schedule, {r['tokens'] / 1e6:.1f}M tokens" if r['source'] == 'corpus_budget'
              else 'harness LM (20k paragraphs, 1 epoch)')
        for n in (100, 1000):
            x = r[n]; g, sig = diff(x['none'], x['pre'])
            t = f"{100 * (ms(x['pre'])[0] - x['tfidf']):+.1f}" if x['pre'] and x['tfidf'] is not None else ''
            out.append(f"| {lang} | {lm} | {n} | {fmt(x['none'])} | {fmt(x['pre'])} | {g}{'' if sig else ' (tie)'} | "
                       f"{x['tfidf']:.3f} | {t} |")
    return out

def counts(rows) -> list:
    "The issue's targets, counted over the languages present"
    res = []
    g100 = [l for l, r in rows.items() if r[100]['pre'] and r[100]['none'] and 100 * (ms(r[100]['pre'])[0] - ms(r[100]['none'])[0]) >= 3]
    res.append(f'- Pretraining >= +3 points at 100 labels: {len(g100)} of {len(rows)} languages ({", ".join(g100) or "none"}).')
    g1000 = [100 * (ms(r[1000]['pre'])[0] - ms(r[1000]['none'])[0]) for r in rows.values() if r[1000]['pre'] and r[1000]['none']]
    if g1000: res.append(f'- Pretraining at 1000 labels: {statistics.mean(g1000):+.1f} points on average over {len(g1000)} languages.')
    b100 = [l for l, r in rows.items() if r[100]['pre'] and ms(r[100]['pre'])[0] >= r[100]['tfidf']]
    res.append(f'- 100-label MultiFiT >= TF-IDF + LR: {len(b100)} of {len(rows)} ({", ".join(b100) or "none"}).')
    t1000 = {l: 100 * (ms(r[1000]['pre'])[0] - r[1000]['tfidf']) for l, r in rows.items() if r[1000]['pre']}
    if t1000: res.append(f'- 1000 labels, MultiFiT − TF-IDF + LR: {statistics.mean(t1000.values()):+.1f} points on average; '
                         + ', '.join(f'{l} {v:+.1f}' for l, v in t1000.items()) + '.')
    return res

def main():
    h = load(RES/'ddtp_all'/'ddtp.json')
    rows = {}
    for lang in LANGS:
        r = corpus_rows(lang) or (harness_rows(lang, h) if h else None)
        if r: rows[lang] = r
    md = '\n'.join(['# MultiFiT with and without corpus pretraining, all languages', '',
                    'Produced by `bench/corpus_summary.py` from the seeded results in this folder: per language the longest complete '
                    'corpus-pretraining schedule of `bench/corpus_budget.py` (demo-size LM, every LM then fine-tuned 2 epochs on up '
                    'to 4000 in-domain descriptions; "no corpus" is that in-domain LM alone) or, where no such run exists, the '
                    "harness's rows (`ddtp_all/`: 6 in-domain epochs). Accuracy on `valid.csv`, mean ± sd over 3 classifier seeds; "
                    'a gain inside the larger sd is marked a tie. "1000 labels" is all of `train.csv` (zh 208, es 468, ru 630 rows).',
                    ''] + table(rows) + [''] + counts(rows)) + '\n'
    atomic_write_text(RES/'corpus_summary.md', md)
    print(md)

if __name__ == '__main__': main()
