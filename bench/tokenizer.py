"""Tokenizer benchmark (not a test): SPTokenizer vs SentencePiece's own batch encode, cost of the text rules (and of
each way of making them cheaper), 1 vs 2 worker processes, time to train a 15k vocabulary on a 16 MB corpus, and unknown rates for CJK coverage choices.

Run: .venv/bin/python bench/tokenizer.py [--data ../shared/data] [--reps 3]
Writes bench/results/tokenizer.json and bench/results/tokenizer.md. All ratios come from one run, timings interleaved.
"""
import argparse, json, os, platform, re, statistics, sys, time
from datetime import date
from pathlib import Path
import pandas as pd, torch
from fastai.text.core import fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces
from multifit_fastai.textrules import apply_rules, apply_rules_batch, _replace_case_re, _char_tables
from multifit_fastai.tokenizer import SPTokenizer, UNK_ID
from multifit_fastai.core import read_lines

FASTAI = [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
def rules_per_pass(t):
    "The rules as they were: one regex pass per rule, the case rule as one regex with a Python callback"
    for f in FASTAI: t = f(t)
    return _replace_case_re(t)

# one compiled alternation of the fastai rules' triggers (a superset of where they can match), one search per text
_re_any = re.compile(r'[;\\<@&/#]|(\S)\1\1|  |(?:\s|^)(\w+)\s+\2\s')
def rules_alternation(t):
    if _re_any.search(t):
        for f in FASTAI: t = f(t)
    return _replace_case_re(t)

def timeit(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    return time.perf_counter() - t0, time.process_time() - c0, r

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', type=Path, default=Path(__file__).resolve().parents[2]/'shared'/'data')
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--max-lines', type=int, default=None, help='use only the first N corpus lines (quick check)')
    ap.add_argument('--out', type=Path, default=Path(__file__).parent/'results')
    a = ap.parse_args()
    corpus_file = a.data/'corpora'/'de.txt.gz'
    texts = list(read_lines(corpus_file, max_lines=a.max_lines))
    mb = sum(len(t.encode()) for t in texts) / 1e6
    res = dict(machine=f'{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}', date=str(date.today()),
               corpus=str(corpus_file.name), n_texts=len(texts), corpus_mb=round(mb, 2))
    print(f'corpus: {len(texts):,} paragraphs, {mb:.1f} MB', flush=True)

    # 1. training time of a 15k unigram model on the whole corpus (rules on)
    wall, cpu, tok = timeit(lambda: SPTokenizer.train(texts, lang='de', vocab_sz=15000))
    res['train_15k'] = dict(wall_s=round(wall, 1), cpu_s=round(cpu, 1), n_sentences=tok.meta['n_sentences'],
                            n_threads=tok.meta['n_threads'])
    print('train 15k:', res['train_15k'], flush=True)

    raw = SPTokenizer(tok.model_proto, rules=False)  # same model, rules off
    _char_tables()  # built once per process on first use (not part of the timings)
    ruled = apply_rules_batch(texts, tok.rule_fns)  # the text SentencePiece sees with rules on
    assert ruled == [rules_per_pass(t) for t in texts] == [rules_alternation(t) for t in texts]
    n_threads = os.cpu_count()
    fns = {
        'sp_batch': lambda: tok.sp.encode(texts, out_type=int, num_threads=n_threads),
        'tfm_batch_rules_off': lambda: raw.encode_batch(texts),
        'tfm_batch_rules_off_all_tensors': lambda: list(raw.encode_batch(texts)),
        'tfm_per_text_rules_off': lambda: [raw(t) for t in texts],
        'sp_ruled': lambda: tok.sp.encode(ruled, out_type=int, num_threads=n_threads),
        'rules_per_pass': lambda: [rules_per_pass(t) for t in texts],
        'rules_alternation': lambda: [rules_alternation(t) for t in texts],
        'rules_str_skips': lambda: [_replace_case_re(apply_rules(t, FASTAI)) for t in texts],
        'rules_str_skips_str_case': lambda: [apply_rules(t, tok.rule_fns) for t in texts],
        'rules_only': lambda: apply_rules_batch(texts, tok.rule_fns),
        'tfm_batch_rules_on_1proc': lambda: tok.encode_batch(texts, n_workers=1),
        'tfm_batch_rules_on_2proc': lambda: tok.encode_batch(texts, n_workers=2, min_mp_chars=0),
        'tfm_batch_rules_on_default': lambda: tok.encode_batch(texts),
    }
    runs, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    n_tokens = sum(len(o) for o in tok.sp.encode(texts, out_type=int, num_threads=n_threads))
    n_tokens_ruled = sum(len(o) for o in tok.sp.encode(ruled, out_type=int, num_threads=n_threads))
    fns['sp_batch']()  # warm-up
    for r in range(a.reps):
        for k, f in fns.items():  # interleaved: every variant once per round
            wall, c, _ = timeit(f)
            runs[k].append(wall); cpu[k].append(c)
        print(f'round {r + 1}:', {k: round(v[-1], 2) for k, v in runs.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    wall_sp_ruled = med['sp_ruled']  # SentencePiece on the ruled text, for the cost of encoding with rules on
    levers = ['rules_per_pass', 'rules_alternation', 'rules_str_skips', 'rules_str_skips_str_case', 'rules_only']
    res['encode'] = dict(
        n_tokens=n_tokens, reps=a.reps, median_wall_s={k: round(v, 3) for k, v in med.items()},
        sp_batch_tokens_per_s=round(n_tokens / med['sp_batch']),
        n_tokens_rules_on=n_tokens_ruled,
        tfm_batch_rules_on_default_tokens_per_s=round(n_tokens_ruled / med['tfm_batch_rules_on_default']),
        tokens_per_s_rules_on_default_vs_sp=round(n_tokens_ruled / med['tfm_batch_rules_on_default'] / (n_tokens / med['sp_batch']), 3),
        ratio_tfm_batch_vs_sp=round(med['sp_batch'] / med['tfm_batch_rules_off'], 3),
        ratio_tfm_per_text_vs_sp=round(med['sp_batch'] / med['tfm_per_text_rules_off'], 3),
        ratio_tfm_batch_all_tensors_vs_sp=round(med['sp_batch'] / med['tfm_batch_rules_off_all_tensors'], 3),
        rules_cost_vs_encode=round(med['rules_only'] / wall_sp_ruled, 3),
        rules_cost_vs_encode_by_lever={k: round(med[k] / wall_sp_ruled, 3) for k in levers},
        rules_cpu_s_by_lever={k: round(statistics.median(cpu[k]), 3) for k in levers},
        speedup_vs_per_pass={k: round(med['rules_per_pass'] / med[k], 2) for k in levers},
        ratio_tfm_batch_rules_on_vs_sp=round(med['sp_batch'] / min(med['tfm_batch_rules_on_1proc'], med['tfm_batch_rules_on_2proc']), 3),
        ratio_tfm_batch_rules_on_default_vs_sp=round(med['sp_batch'] / med['tfm_batch_rules_on_default'], 3),
        speedup_2proc_vs_1proc_rules_on=round(med['tfm_batch_rules_on_1proc'] / med['tfm_batch_rules_on_2proc'], 3))
    print('encode:', res['encode'], flush=True)
    import cProfile, pstats  # where the batch rules spend their time (one profiled call; its overhead included)
    prof = cProfile.Profile(); prof.runcall(apply_rules_batch, texts, tok.rule_fns)
    st = pstats.Stats(prof).stats
    total = sum(v[2] for v in st.values())
    top = sorted(st.items(), key=lambda kv: -kv[1][2])[:8]
    res['rules_profile'] = [dict(function=f'{Path(k[0]).name}:{k[1]}({k[2]})', self_s=round(v[2], 3), cum_s=round(v[3], 3),
                                 share=round(v[2] / total, 3)) for k, v in top]

    # 2. CJK character coverage: unknown rate on DDTP valid for 0.99 (paper) vs 0.9995 (+ byte fallback, ours)
    res['cjk'] = {}
    for lang in ['ja', 'zh']:
        lines = list(read_lines(a.data/'corpora'/f'{lang}.txt.gz', max_lines=a.max_lines or 60000))
        valid = list(pd.read_csv(a.data/'ddtp'/lang/'valid.csv').text)
        for cov, bf in [(0.99, False), (0.9995, False), (0.9995, True)]:
            t = SPTokenizer.train(lines, lang=lang, vocab_sz=15000, character_coverage=cov, byte_fallback=bf)
            ids = t.encode_batch(valid)
            n = sum(len(o) - 1 for o in ids); unk = sum(int((o == UNK_ID).sum()) for o in ids)
            res['cjk'][f'{lang} coverage={cov} byte_fallback={bf}'] = dict(
                unk_rate=round(unk / n, 5), tokens=n, docs_with_unk=sum(bool((o == UNK_ID).any()) for o in ids),
                n_docs=len(valid))
            print(lang, cov, bf, res['cjk'][f'{lang} coverage={cov} byte_fallback={bf}'], flush=True)

    a.out.mkdir(parents=True, exist_ok=True)
    (a.out/'tokenizer.json').write_text(json.dumps(res, indent=2) + '\n')
    e = res['encode']
    md = [f"Tokenizer benchmark — {res['machine']}, {res['date']}; corpus `{res['corpus']}` "
          f"({res['n_texts']:,} paragraphs, {res['corpus_mb']} MB, {e['n_tokens']:,} tokens); median of {e['reps']} "
          'interleaved rounds, wall time.', '',
          '| measure | value |', '|---|---|',
          f"| train 15k unigram on the corpus (rules on, {res['train_15k']['n_threads']} threads) | {res['train_15k']['wall_s']} s |",
          f"| SentencePiece batch encode (`sp.encode(list)`, {os.cpu_count()} threads) | {e['median_wall_s']['sp_batch']} s ({e['sp_batch_tokens_per_s']:,} tokens/s) |",
          f"| `SPTokenizer.encode_batch`, rules off (ids kept as SentencePiece returns them, tensors built on access) | {e['median_wall_s']['tfm_batch_rules_off']} s → **{e['ratio_tfm_batch_vs_sp']}x** SentencePiece's speed (target ≥ 0.9x) |",
          f"| `encode_batch`, rules off, then every `TensorText` built (`list(...)`) | {e['median_wall_s']['tfm_batch_rules_off_all_tensors']} s → {e['ratio_tfm_batch_all_tensors_vs_sp']}x |",
          f"| `SPTokenizer(text)` one text at a time, rules off | {e['median_wall_s']['tfm_per_text_rules_off']} s → {e['ratio_tfm_per_text_vs_sp']}x |",
          f"| the rules alone (fastai rules + `replace_case`, `apply_rules_batch`) | {e['median_wall_s']['rules_only']} s → **{e['rules_cost_vs_encode']}x** the encode itself (aim ≤ 1) |",
          f"| `encode_batch`, rules on, 1 process | {e['median_wall_s']['tfm_batch_rules_on_1proc']} s |",
          f"| `encode_batch`, rules on, 2 processes | {e['median_wall_s']['tfm_batch_rules_on_2proc']} s ({e['speedup_2proc_vs_1proc_rules_on']}x) |",
          f"| `encode_batch`, rules on, default settings (1 process: rules and SentencePiece overlapped in two threads) | {e['median_wall_s']['tfm_batch_rules_on_default']} s → **{e['ratio_tfm_batch_rules_on_default_vs_sp']}x** SentencePiece's time, {e['tfm_batch_rules_on_default_tokens_per_s']:,} tokens/s ({e['n_tokens_rules_on']:,} tokens) = **{e['tokens_per_s_rules_on_default_vs_sp']}x** its tokens/s (target ≥ 0.5x) |",
          '', 'Cost of the rules (wall time over SentencePiece encoding the ruled text, same rounds), lever by lever:', '',
          '| rules implementation | wall s | CPU s | × the encode | speed-up vs one pass per rule |', '|---|---|---|---|---|']
    names = {'rules_per_pass': 'one regex pass per rule, case rule as regex + callback (before)',
             'rules_alternation': 'one compiled alternation of the triggers, then the rules only where it matches',
             'rules_str_skips': '`str` trigger tests skip each rule (`apply_rules`), case rule still regex',
             'rules_str_skips_str_case': '+ case rule on `str` methods (`apply_rules`, one text at a time)',
             'rules_only': 'batch: numpy trigger tests + case markers on code points (`apply_rules_batch`)'}
    md += [f"| {names[k]} | {e['median_wall_s'][k]} | {e['rules_cpu_s_by_lever'][k]} | {e['rules_cost_vs_encode_by_lever'][k]}x | "
           f"{e['speedup_vs_per_pass'][k]}x |" for k in names]
    md += ['', 'Profile of one `apply_rules_batch` call (`cProfile`, self time):', '', '| function | self s | cumulative s | share |', '|---|---|---|---|']
    md += [f"| `{r['function']}` | {r['self_s']} | {r['cum_s']} | {100 * r['share']:.1f} % |" for r in res['rules_profile']]
    md += ['', '| CJK setting (15k, DDTP valid) | unknown-token rate | docs with an unknown |', '|---|---|---|']
    md += [f"| {k} | {v['unk_rate']} | {v['docs_with_unk']}/{v['n_docs']} |" for k, v in res['cjk'].items()]
    (a.out/'tokenizer.md').write_text('\n'.join(md) + '\n')
    print('\n'.join(md))

if __name__ == '__main__': main()
