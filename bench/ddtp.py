"""Evaluation harness on ../shared/data/ddtp (not a test): the paper's kind of tables on this machine.

Per language, one SentencePiece tokenizer (trained on the corpus paragraphs and the in-domain documents) and these
classifier settings, each trained with --seeds (the seed sets the classifier's initialisation and batch order; the
LMs are trained once, seed 0), on 1000 (train.csv) and 100 (train_100.csv) labels:
  * pretrained          QRNN LM pretrained on ../shared/data/corpora/<lang>.txt.gz, then fine-tuned on the
                        language's in-domain unlabelled documents (ddtp/<lang>/unlabelled.csv.gz): MultiFiT's recipe
  * in_domain_lm        the paper's "no wiki" row: no corpus pretraining, the LM trained only on the in-domain text
  * pretrained_task     the corpus LM fine-tuned on the 1000 task texts only (the in-domain lever switched off)
  * no_pretraining      the classifier from scratch (same tokenizer)
  * tfidf_lr            TF-IDF (char 1-4 + word 1-2) + logistic regression (deterministic: one run)
With --levers, the classifiers of --lever-labels (default: 100 labels) are also trained with each classifier-recipe lever (`<setting>+<lever>`;
M = --min-steps-100): `min_steps` (at least M optimizer steps instead of --clas-epochs), `head` (M steps, after a
frozen-encoder phase of M/2 steps instead of one epoch), `gradual` (M steps with ULMFiT's gradual unfreezing, one
more layer group every M/8 steps); levers that only differ in the frozen phase run for pretrained settings only. With
--base-100 steps the 100-label base recipe itself is `head` from an LM and `min_steps` from scratch (a fixed epoch count
gives a 100-label set a few dozen optimizer steps). For --word-langs, the `pretrained` pipeline with a word-level tokenizer (paper Table 7):
texts segmented into words first (ja: janome, zh: jieba, others: words and punctuation marks), then a SentencePiece
'word' model keeping the --vocab-sz most frequent words.

Accuracy on valid.csv (mean +- sd over seeds), time per stage, model size. Checkpointed and resumable: every finished
run is kept in the results JSON and skipped on the next run; every stage's package stays in --work.

Run:   .venv/bin/python bench/ddtp.py [--langs de ja ...] [--settings pretrained in_domain_lm ...] [--seeds 0 1 2] [--quick]
Writes bench/results/ddtp.{json,md,png} (or *_quick.* with --quick; --out picks another folder).
Also: --mldoc DIR runs the same on the original MLDoc/CLS layout ({lang}.train.csv, {lang}.dev.csv, header-less
label,text; the in-domain text is then the train texts).
"""
import argparse, json, os, platform, re, shutil, statistics, time
from datetime import date
from pathlib import Path
import pandas as pd, torch
from multifit_fastai.pipeline import MultiFiT, tfidf_baseline, read_mldoc
from multifit_fastai.core import read_lines, atomic_write_json, atomic_write_text
from multifit_fastai.precision import resolve_precision
from multifit_fastai.package import load_package

HERE = Path(__file__).resolve().parent
LANGS = ['de', 'ja', 'zh', 'fr', 'es', 'it', 'ru', 'en']
SETTINGS = {'pretrained': 'MultiFiT: corpus pretraining + in-domain LM fine-tuning',
            'in_domain_lm': 'MultiFiT "no wiki": LM on the in-domain text only',
            'pretrained_task': 'MultiFiT: corpus pretraining + fine-tuning on the task texts only',
            'no_pretraining': 'MultiFiT, no pretraining',
            'tfidf_lr': 'TF-IDF + LR'}
QUICK_DIMS = dict(emb_sz=64, n_hid=128, n_layers=2)  # the --quick LM
LEVERS = {'min_steps': 'at least M steps', 'head': 'M steps after M/2 frozen-encoder steps', 'gradual': 'M steps, gradual unfreezing',
          'slice': "the paper's discriminative rates slice(1e-2/2.6**4, 2e-2)"}

def lever_kwargs(lever: str, m: int) -> dict:
    "Classifier preset fields of `lever` at `m` minimum steps"
    return {'min_steps': dict(min_steps=m), 'head': dict(min_steps=m, head_steps=m // 2),
            'gradual': dict(min_steps=m, unfreeze='gradual', head_steps=max(1, m // 8)),
            'slice': dict(lr=2e-2, lr_low=1e-2 / 2.6**4)}[lever]

def du_mb(p) -> float: return round(sum(f.stat().st_size for f in Path(p).rglob('*') if f.is_file()) / 1e6, 1)

class Results:
    "A JSON dict of finished entries, written atomically after each one; processes sharing the file merge their entries"
    def __init__(self, path, meta):
        self.path = Path(path)
        self.d = json.loads(self.path.read_text()) if self.path.is_file() else {'meta': meta, 'runs': {}}
        self.d['meta'].update(meta)
    def has(self, k): return k in self.d['runs']
    def refresh(self):
        "Take in what other processes have written (theirs for their keys, ours for our meta)"
        if not self.path.is_file(): return
        disk = json.loads(self.path.read_text())
        self.d['runs'] = {**disk.get('runs', {}), **self.d['runs']}
        self.d['meta'] = {**disk.get('meta', {}), **self.d['meta']}
    def _write(self, update):
        "Read-merge-`update`-write as one step against other processes sharing the file"
        import fcntl
        with open(self.path.with_name(self.path.name + '.lock'), 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.refresh(); update(self.d)
            atomic_write_json(self.path, self.d)
    def put(self, k, v):
        self._write(lambda d: d['runs'].__setitem__(k, v))
        print(f'  [{k}] {v}', flush=True)
    def put_meta(self, **kw):
        "Add `kw` to the meta and write it (a meta set only in memory is lost unless a later `put` writes it)"
        self._write(lambda d: d['meta'].update(kw))

def load_lang(a, lang):
    "train (1000), train_100, valid and the in-domain unlabelled texts"
    if a.mldoc:
        d = Path(a.mldoc)
        tr = read_mldoc(d/f'{lang}.train.csv'); va = read_mldoc(d/f'{lang}.dev.csv')
        return tr, tr.sample(min(100, len(tr)), random_state=0), va, list(tr.text)
    d = a.data/'ddtp'/lang
    tr, t100, va = (pd.read_csv(d/f'{s}.csv') for s in ('train', 'train_100', 'valid'))
    unl = pd.read_csv(d/'unlabelled.csv.gz').text.dropna().astype(str).tolist()
    if a.max_unlabelled: unl = unl[:a.max_unlabelled]
    if a.quick: tr, va = tr.sample(200, random_state=0), va[:150]
    return tr, t100, va, unl

WORD_RE = re.compile(r'\w+|[^\w\s]')

def word_segmenter(lang):
    "Word segmentation for the word-level runs: MeCab-style morphemes (janome) for ja, jieba for zh, else words and punctuation"
    try:
        if lang == 'ja':
            from janome.tokenizer import Tokenizer
            t = Tokenizer(wakati=True)
            return lambda s: ' '.join(w for w in t.tokenize(s) if w.strip())
        if lang.startswith('zh'):
            import jieba
            jieba.setLogLevel(60)
            return lambda s: ' '.join(w for w in jieba.cut(s) if w.strip())
    except ImportError as e:
        raise SystemExit(f'word-level {lang} needs a word segmenter: pip install janome jieba ({e})') from None
    return lambda s: ' '.join(WORD_RE.findall(s))

def experiment(a, path, lang, tok_kwargs, share_from=None, stages=()):
    "A `MultiFiT` experiment; `share_from` lends its tokenizer (and `stages`' packages) so settings differ only in the LM"
    if share_from is not None:
        for s in ('tokenizer',) + tuple(stages):
            src, dst = share_from.stage_path(s), Path(path)/share_from.stage_path(s).name
            if not dst.exists(): shutil.copytree(src, dst)
    return MultiFiT(path, lang=lang, size=a.size, vocab_sz=a.vocab_sz, tok_kwargs=tok_kwargs,
                    overrides=dict(bptt=a.bptt, **({} if not a.quick else QUICK_DIMS)))

def lm_experiments(a, lang, tokenization, tr, unl, seg):
    "Train the LMs the requested settings need; returns {setting: (experiment, encoder)}"
    base = a.work/f'{lang}-{tokenization}'
    tok_kwargs = {'model_type': 'word'} if tokenization == 'word' else {}
    settings = ['pretrained'] if tokenization == 'word' else [s for s in a.settings if s != 'tfidf_lr']
    needs_corpus = any(s in settings for s in ('pretrained', 'pretrained_task'))
    main = experiment(a, base, lang, tok_kwargs)
    lm_kw = dict(bs=a.lm_bs, lr=a.lm_lr, precision=a.precision)
    if not (base/'tokenizer'/'tokenizer.json').is_file() or (needs_corpus and not (base/'lm_pretrained'/'config.json').is_file()):
        corpus = list(read_lines(a.data/'corpora'/f'{lang}.txt.gz', max_lines=a.max_lines)) if not a.mldoc else []
        if seg is not None:
            t0 = time.time(); corpus = [seg(t) for t in corpus]
            print(f'  segmented {len(corpus)} corpus paragraphs into words in {time.time() - t0:.0f}s', flush=True)
        main.train_tokenizer(corpus + unl)
        if needs_corpus: main.pretrain_lm(corpus + list(tr.text), epochs=a.pretrain_epochs, **lm_kw)
    out = {}
    if 'pretrained' in settings:
        main.finetune_lm(unl, epochs=a.finetune_epochs, bs=a.lm_bs, lr=a.ft_lr, precision=a.precision)
        out['pretrained'] = (main, 'auto')
    if 'no_pretraining' in settings: out['no_pretraining'] = (main, None)
    if 'in_domain_lm' in settings:
        e = experiment(a, a.work/f'{lang}-{tokenization}-in_domain', lang, tok_kwargs, share_from=main)
        e.finetune_lm(unl, epochs=a.in_domain_epochs, first_epoch_last_group=False, **lm_kw)  # from scratch: no frozen epoch
        out['in_domain_lm'] = (e, 'auto')
    if 'pretrained_task' in settings:
        e = experiment(a, a.work/f'{lang}-{tokenization}-task', lang, tok_kwargs, share_from=main, stages=('pretrain',))
        e.finetune_lm(list(tr.text), epochs=a.task_finetune_epochs, bs=a.lm_bs, lr=a.ft_lr, precision=a.precision)
        out['pretrained_task'] = (e, 'auto')
    return out

def classifier_run(a, res, key, exp, enc, train, va, name, seed, **kw):
    if res.has(key): return
    t0 = time.time()
    clas_kw = {**(dict(lr=a.clas_lr, lr_low=None) if a.clas_flat else {}), **kw}  # a lever's rates win
    pkg_dir = exp.train_classifier(train, valid=va[:a.epoch_valid] if a.epoch_valid else va, epochs=a.clas_epochs, name=name, encoder=enc, bs=a.clas_bs,
                                   seed=seed, precision=a.precision, **clas_kw)
    pred = load_package(pkg_dir).predict(list(va.text))
    acc = float((pred.label.values == va.label.astype(str).values).mean())
    h = exp.history
    res.put(key, dict(accuracy=round(acc, 4), seconds_classifier=round(time.time() - t0, 1), seed=seed,
                      epochs=h.get(name, {}).get('epochs'), steps=h.get(name, {}).get('steps'),
                      seconds_pretrain=h.get('pretrain', {}).get('seconds'), seconds_finetune=h.get('finetune_lm', h.get('finetune', {})).get('seconds'),
                      lm_valid_perplexity=h.get('finetune_lm', h.get('finetune', {})).get('valid_perplexity'),
                      lm_tokens_per_epoch=h.get('finetune_lm', h.get('finetune', {})).get('tokens_per_epoch'),
                      model_mb=du_mb(pkg_dir), threads=torch.get_num_threads(), **kw))
    shutil.rmtree(pkg_dir, ignore_errors=True)  # the accuracy is recorded; classifier packages are 20 MB each

def run_lang(a, res, lang, tokenization='subword'):
    tr, t100, va, unl = load_lang(a, lang)
    seg = word_segmenter(lang) if tokenization == 'word' else None
    if seg is not None: tr, t100, va = (df.assign(text=[seg(t) for t in df.text]) for df in (tr, t100, va)); unl = [seg(t) for t in unl]
    exps = lm_experiments(a, lang, tokenization, tr, unl, seg)
    label_sets = [(n, {1000: tr, 100: t100}[n]) for n in a.labels if tokenization == 'subword' or n == 1000]
    for n, train in label_sets:
        for setting, (exp, enc) in exps.items():
            levers = [l for l in (a.levers if n in a.lever_labels else []) if enc is not None or l == 'min_steps']
            base = {} if n != 100 or a.base_100 == 'epochs' else lever_kwargs('head' if enc is not None else 'min_steps', a.min_steps_100)
            variants = [('', base)] + [(f'+{l}', lever_kwargs(l, a.min_steps_100)) for l in levers]
            for suffix, kw in variants:
                for seed in a.seeds:
                    key = f'{lang}/{tokenization}/{setting}{suffix}/{n}/s{seed}'
                    classifier_run(a, res, key, exp, enc, train, va, f'clas_{setting}{suffix}_{n}_s{seed}', seed, **kw)
        if tokenization == 'subword' and 'tfidf_lr' in a.settings:
            key = f'{lang}/subword/tfidf_lr/{n}'
            if not res.has(key):
                b = tfidf_baseline(train, va)
                res.put(key, dict(accuracy=round(b['accuracy'], 4), seconds=b['seconds']))

def cell(runs, prefix):
    "Accuracies of every seed of `prefix` (a setting at one label count), or of the single deterministic run"
    if prefix in runs: return [runs[prefix]['accuracy']]
    return [v['accuracy'] for k, v in runs.items() if k.rsplit('/', 1)[0] == prefix]

def fmt(xs):
    if not xs: return ''
    if len(xs) == 1: return f'{xs[0]:.3f}'
    return f'{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}'

def write_md(res, out):
    runs, m = res.d['runs'], res.d['meta']
    langs = [l for l in LANGS if any(k.startswith(l + '/') for k in runs)]
    names = sorted({k.split('/')[2] for k in runs}, key=lambda s: (list(SETTINGS).index(s.split('+')[0]) if s.split('+')[0] in SETTINGS else 99, s))
    rows = [f"DDTP topic classification (8 classes), accuracy on `valid.csv`, mean ± sd over classifier seeds {m.get('seeds')} "
            f"(TF-IDF: one deterministic run). {m['machine']}, {m['date']}; LM size `{m['size']}` ({m['dims']}), vocab "
            f"{m['vocab_sz']}; corpus pretraining on the first {m['max_lines']} paragraphs of `corpora/<lang>.txt.gz` for "
            f"{m['pretrain_epochs']} epoch(s); in-domain LM fine-tuning on `unlabelled.csv.gz` ({m.get('max_unlabelled') or 'all'} "
            f"documents) for {m['finetune_epochs']} epoch(s), the \"no wiki\" LM {m.get('in_domain_epochs')} epoch(s) on the same "
            f"text; LM batch {m.get('lm_bs')} at lr {m.get('lm_lr')} (fine-tuning {m.get('ft_lr')}); classifier "
            f"{m['clas_epochs']} epochs (+1 frozen epoch when pretrained)"
            + (f", at 100 labels at least {m['min_steps_100']} steps (after {m['min_steps_100'] // 2} frozen-encoder steps when pretrained)"
               if m.get('base_100') == 'steps' else '') + f", batch {m.get('clas_bs')} at "
            + ("one flat lr " + str(m.get('clas_lr')) if m.get('clas_flat') else "the paper's discriminative slice")
            + f"; precision {m.get('precision', 'fp32')}.", '',
            '| setting | labels | ' + ' | '.join(langs) + ' |', '|---|---|' + '---|' * len(langs)]
    for n in (1000, 100):
        for tok in ('subword', 'word'):
            for name in names:
                cells = [cell(runs, f'{l}/{tok}/{name}/{n}') for l in langs]
                if any(cells):
                    base, _, lever = name.partition('+')
                    label = SETTINGS.get(base, base) + (f' + {LEVERS.get(lever, lever)}' if lever else '') + (', word-level tokens' if tok == 'word' else '')
                    rows.append(f'| {label} | {n} | ' + ' | '.join(fmt(c) for c in cells) + ' |')
    levers = [('in-domain LM fine-tuning', 'pretrained', 'pretrained_task'), ('corpus pretraining', 'pretrained', 'in_domain_lm'),
              ('in-domain LM alone ("no wiki")', 'in_domain_lm', 'no_pretraining'), ('the whole MultiFiT LM', 'pretrained', 'no_pretraining'),
              ('MultiFiT vs TF-IDF + LR', 'pretrained', 'tfidf_lr'), ('"no wiki" vs TF-IDF + LR', 'in_domain_lm', 'tfidf_lr')]
    levers += [(f'recipe: {LEVERS[lv]}' + ('' if lv == 'slice' else f' (M={m.get("min_steps_100")})'), f'{s}+{lv}', s) for s in SETTINGS for lv in LEVERS]
    levers += [(f'{LEVERS[lv]} (M={m.get("min_steps_100")}): "no wiki" vs no pretraining', f'in_domain_lm+{lv}', 'no_pretraining+min_steps')
               for lv in LEVERS] + [(f'{LEVERS[lv]}: "no wiki" vs TF-IDF + LR', f'in_domain_lm+{lv}', 'tfidf_lr') for lv in LEVERS]
    lever_rows = []
    for what, x, y in levers:
        for n in (1000, 100):
            ds = []
            for l in langs:
                cx, cy = cell(runs, f'{l}/subword/{x}/{n}'), cell(runs, f'{l}/subword/{y}/{n}')
                ds.append('' if not cx or not cy else f'{100 * (statistics.mean(cx) - statistics.mean(cy)):+.1f}')
            if any(ds): lever_rows.append(f'| {what} | {n} | ' + ' | '.join(ds) + ' |')
    if lever_rows:
        rows += ['', 'Each lever: difference of the means, in points (a difference inside the seeds\' sd above is a tie).', '',
                 '| lever | labels | ' + ' | '.join(langs) + ' |', '|---|---|' + '---|' * len(langs)] + lever_rows
    rows += ['', '| time per language (s) | ' + ' | '.join(langs) + ' |', '|---|' + '---|' * len(langs)]
    def first(l, setting, key):
        v = [r.get(key) for n in (1000, 100) for k, r in runs.items() if k.startswith(f'{l}/subword/{setting}/{n}/')]
        return '' if not v or v[0] is None else str(v[0])
    for what, setting, key in [('LM pretraining (corpus)', 'pretrained', 'seconds_pretrain'), ('LM fine-tuning (in-domain)', 'pretrained', 'seconds_finetune'),
                               ('"no wiki" LM', 'in_domain_lm', 'seconds_finetune'), ('classifier, pretrained (one seed; 1000 labels where run)', 'pretrained', 'seconds_classifier'),
                               ('classifier, no pretraining (one seed; 1000 labels where run)', 'no_pretraining', 'seconds_classifier'),
                               ('in-domain tokens per LM epoch', 'in_domain_lm', 'lm_tokens_per_epoch'), ('torch threads', 'no_pretraining', 'threads')]:
        rows.append(f'| {what} | ' + ' | '.join(first(l, setting, key) for l in langs) + ' |')
    atomic_write_text(out, '\n'.join(rows) + '\n')

def plot(res) -> bytes:
    "Grouped bars: mean ± sd accuracy of every setting (no levers) per language, one panel per label count"
    import io, matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    runs = res.d['runs']
    langs = [l for l in LANGS if any(k.startswith(l + '/subword/') for k in runs)]
    counts = [n for n in (1000, 100) if any(cell(runs, f'{l}/subword/{s}/{n}') for l in langs for s in SETTINGS)]
    fig, axes = plt.subplots(len(counts), 1, figsize=(max(6, 1.3 * len(langs)), 3.2 * len(counts)), squeeze=False)
    for ax, n in zip(axes[:, 0], counts):
        names = [s for s in SETTINGS if any(cell(runs, f'{l}/subword/{s}/{n}') for l in langs)]
        w = 0.8 / max(1, len(names))
        for j, s in enumerate(names):
            cs = [cell(runs, f'{l}/subword/{s}/{n}') for l in langs]
            ax.bar([i + j * w for i in range(len(langs))], [statistics.mean(c) if c else 0 for c in cs], w,
                   yerr=[statistics.stdev(c) if len(c) > 1 else 0 for c in cs], capsize=2, label=SETTINGS[s])
        ax.set_xticks([i + w * (len(names) - 1) / 2 for i in range(len(langs))], langs)
        ax.set_ylabel('accuracy (valid.csv)'); ax.set_title(f'{n} labels'); ax.set_ylim(0, 1)
    axes[0, 0].legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=100); plt.close(fig)
    return buf.getvalue()

def write_all(res, out: Path):
    "The markdown table and the plot"
    write_md(res, out.with_suffix('.md'))
    from multifit_fastai.core import atomic_write_bytes
    atomic_write_bytes(out.with_suffix('.png'), plot(res))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--mldoc', type=Path, help='directory with MLDoc/CLS-layout CSVs instead of DDTP')
    ap.add_argument('--langs', nargs='+', default=LANGS)
    ap.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--epoch-valid', type=int, default=0, help='valid documents scored after each training epoch (0: all); the reported accuracy is always on all of valid.csv')
    ap.add_argument('--labels', nargs='+', type=int, default=[1000, 100], choices=[1000, 100], help='label sets, in this order')
    ap.add_argument('--word-langs', nargs='*', default=[])
    ap.add_argument('--size', default='demo'); ap.add_argument('--vocab-sz', type=int, default=8000)
    ap.add_argument('--max-lines', type=int, default=20000, help='corpus paragraphs used for pretraining')
    ap.add_argument('--max-unlabelled', type=int, default=0, help='in-domain documents used (0: all)')
    ap.add_argument('--pretrain-epochs', type=int, default=1); ap.add_argument('--finetune-epochs', type=int, default=2)
    ap.add_argument('--in-domain-epochs', type=int, default=3, help='epochs of the "no wiki" LM on the in-domain text')
    ap.add_argument('--task-finetune-epochs', type=int, default=2)
    ap.add_argument('--clas-epochs', type=int, default=6); ap.add_argument('--clas-bs', type=int, default=18)
    ap.add_argument('--levers', nargs='*', default=[], choices=list(LEVERS), help='classifier-recipe levers measured at 100 labels')
    ap.add_argument('--min-steps-100', type=int, default=200, help='M: the levers\' minimum number of optimizer steps')
    ap.add_argument('--base-100', default='epochs', choices=('epochs', 'steps'),
                    help="the 100-label base recipe: 'epochs' (--clas-epochs) or 'steps' (M = --min-steps-100 steps, after M/2 frozen-encoder steps from an LM)")
    ap.add_argument('--lever-labels', nargs='+', type=int, default=[100], choices=[1000, 100], help='label sets the levers run at')
    ap.add_argument('--lm-bs', type=int, default=32, help='LM batch size (paper: 50; small corpora need more steps)')
    ap.add_argument('--lm-lr', type=float, default=1e-2); ap.add_argument('--ft-lr', type=float, default=5e-3)
    ap.add_argument('--clas-lr', type=float, default=1e-2)
    ap.add_argument('--clas-flat', type=int, default=1, help="1: one flat classifier lr; 0: the paper's slice(lr/2.6**4, 2e-2)")
    ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'auto'), help='auto: bf16 where the CPU has it natively, else fp32 (default)')
    ap.add_argument('--work', type=Path, default=HERE/'work'/'ddtp')
    ap.add_argument('--quick', action='store_true', help='tiny run of every path (minutes)')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    if a.quick:
        a.max_lines, a.pretrain_epochs, a.finetune_epochs, a.in_domain_epochs, a.task_finetune_epochs = 1500, 1, 1, 1, 1
        a.clas_epochs, a.vocab_sz, a.max_unlabelled, a.work = 2, 3000, 300, a.work.with_name('ddtp_quick')
        a.min_steps_100 = min(a.min_steps_100, 8)
        a.seeds = a.seeds[:2]
    from multifit_fastai.presets import SIZES
    dims = SIZES.get(a.size, {}) if not a.quick else QUICK_DIMS
    meta = dict(machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}',
                date=str(date.today()), size=a.size if not a.quick else 'quick', dims=dims, vocab_sz=a.vocab_sz, max_lines=a.max_lines,
                max_unlabelled=a.max_unlabelled, pretrain_epochs=a.pretrain_epochs, finetune_epochs=a.finetune_epochs,
                in_domain_epochs=a.in_domain_epochs, task_finetune_epochs=a.task_finetune_epochs, clas_epochs=a.clas_epochs,
                bptt=a.bptt, lm_bs=a.lm_bs, lm_lr=a.lm_lr, ft_lr=a.ft_lr, clas_bs=a.clas_bs, clas_lr=a.clas_lr,
                clas_flat=a.clas_flat, seeds=a.seeds, epoch_valid=a.epoch_valid, min_steps_100=a.min_steps_100, base_100=a.base_100, levers=a.levers, lever_labels=a.lever_labels, precision=resolve_precision(a.precision))
    stem = 'ddtp_quick' if a.quick else ('mldoc' if a.mldoc else 'ddtp')
    res = Results(a.out/f'{stem}.json', meta)
    for lang in a.langs:
        print(f'== {lang}', flush=True)
        run_lang(a, res, lang, 'subword')
        write_all(res, a.out/stem)
    for lang in a.word_langs:
        if lang in a.langs:
            print(f'== {lang} word-level', flush=True)
            run_lang(a, res, lang, 'word')
            write_all(res, a.out/stem)
    print((a.out/f'{stem}.md').read_text())

if __name__ == '__main__': main()
