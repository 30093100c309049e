"""Evaluation harness on ../shared/data/ddtp (not a test): the paper's kind of tables on this machine.

Per language: a SentencePiece tokenizer and a QRNN LM pretrained on ../shared/data/corpora/<lang>.txt.gz, fine-tuned
on the task texts (train.csv, labels unused), then classifiers on 1000 (train.csv) and 100 (train_100.csv) labels:
  * MultiFiT pretrained   (encoder from the fine-tuned LM)
  * MultiFiT no pretraining (same tokenizer, classifier from scratch)
  * TF-IDF (char 1-4 + word 1-2) + logistic regression
and, for --word-langs, the same pretrained pipeline with a word-level tokenizer (paper Table 7): texts segmented into
words first (ja: janome, zh: jieba, others: words and punctuation marks; `pip install janome jieba`), then a
SentencePiece 'word' model keeping the --vocab-sz most frequent words.
Accuracy on valid.csv, time per stage, model size. Checkpointed and resumable: every finished (lang, setting) is kept
in the results JSON and skipped on the next run; every stage's package stays in --work.

Run:   .venv/bin/python bench/ddtp.py [--langs de ja zh ...] [--size demo] [--max-lines 60000] [--quick]
Writes bench/results/ddtp.json and bench/results/ddtp.md (or *_quick.* with --quick).
Also: --mldoc DIR runs the same on the original MLDoc/CLS layout ({lang}.train.csv, {lang}.dev.csv, header-less
label,text) for users who have those data sets.
"""
import argparse, json, os, platform, re, time
from datetime import date
from pathlib import Path
import pandas as pd, torch
from multifit_fastai.pipeline import MultiFiT, tfidf_baseline, read_mldoc
from multifit_fastai.core import read_lines, atomic_write_json, atomic_write_text
from multifit_fastai.learner import load_package

HERE = Path(__file__).resolve().parent
LANGS = ['de', 'ja', 'zh', 'fr', 'es', 'it', 'ru', 'en']

def du_mb(p) -> float: return round(sum(f.stat().st_size for f in Path(p).rglob('*') if f.is_file()) / 1e6, 1)

class Results:
    "A JSON dict of finished entries, written atomically after each one"
    def __init__(self, path, meta):
        self.path = Path(path)
        self.d = json.loads(self.path.read_text()) if self.path.is_file() else {'meta': meta, 'runs': {}}
        self.d['meta'].update(meta)
    def has(self, k): return k in self.d['runs']
    def put(self, k, v):
        self.d['runs'][k] = v
        atomic_write_json(self.path, self.d)
        print(f'  [{k}] {v}', flush=True)

def load_lang(a, lang):
    if a.mldoc:
        d = Path(a.mldoc)
        tr = read_mldoc(d/f'{lang}.train.csv'); va = read_mldoc(d/f'{lang}.dev.csv')
        return tr, tr.sample(min(100, len(tr)), random_state=0), va
    d = a.data/'ddtp'/lang
    tr, t100, va = (pd.read_csv(d/f'{s}.csv') for s in ('train', 'train_100', 'valid'))
    if a.quick: tr, t100, va = tr.sample(200, random_state=0), t100, va[:150]
    return tr, t100, va

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

def run_lang(a, res, lang, tokenization='subword'):
    tr, t100, va = load_lang(a, lang)
    exp_dir = a.work/f'{lang}-{tokenization}'
    if tokenization == 'word':  # texts pre-segmented into words; SentencePiece's 'word' model then keeps the vocab_sz most frequent
        seg = word_segmenter(lang)
        tr, t100, va = (df.assign(text=[seg(t) for t in df.text]) for df in (tr, t100, va))
    tok_kwargs = {'model_type': 'word'} if tokenization == 'word' else {}
    exp = MultiFiT(exp_dir, lang=lang, size=a.size, vocab_sz=a.vocab_sz, tok_kwargs=tok_kwargs,
                   overrides=dict(bptt=a.bptt, **({} if not a.quick else dict(emb_sz=64, n_hid=128, n_layers=2))))
    corpus = list(read_lines(a.data/'corpora'/f'{lang}.txt.gz', max_lines=a.max_lines))
    if tokenization == 'word' and not (exp_dir/'lm_pretrained'/'config.json').is_file():
        t0 = time.time(); corpus = [seg(t) for t in corpus]
        print(f'  segmented {len(corpus)} corpus paragraphs into words in {time.time() - t0:.0f}s', flush=True)
    exp.pretrain_lm(corpus + list(tr.text), epochs=a.pretrain_epochs, bs=a.lm_bs, lr=a.lm_lr)
    exp.finetune_lm(list(tr.text), valid=list(va.text), epochs=a.finetune_epochs, bs=a.lm_bs, lr=a.ft_lr)
    settings = [(1000, tr), (100, t100)] if tokenization == 'subword' else [(1000, tr)]
    for n, train in settings:
        variants = [('multifit_pretrained', 'auto')] + ([('multifit_no_pretraining', None)] if tokenization == 'subword' else [])
        for name, enc in variants:
            key = f'{lang}/{tokenization}/{name}/{n}'
            if res.has(key): continue
            t0 = time.time()
            clas_kw = dict(lr=a.clas_lr, lr_low=None) if a.clas_flat else {}
            pkg_dir = exp.train_classifier(train, valid=va, epochs=a.clas_epochs, name=f'clas_{name}_{n}', encoder=enc,
                                           bs=a.clas_bs, **clas_kw)
            pkg = load_package(pkg_dir)
            pred = pkg.predict(list(va.text))
            acc = float((pred.label.values == va.label.astype(str).values).mean())
            h = exp.history
            res.put(key, dict(accuracy=round(acc, 4), seconds_classifier=round(time.time() - t0, 1),
                              seconds_pretrain=h.get('pretrain', {}).get('seconds'), seconds_finetune=h.get('finetune', {}).get('seconds'),
                              lm_valid_perplexity=h.get('finetune', {}).get('valid_perplexity'),
                              pretrain_tokens_per_epoch=h.get('pretrain', {}).get('tokens_per_epoch'),
                              model_mb=du_mb(pkg_dir), threads=torch.get_num_threads()))
        if tokenization == 'subword':
            key = f'{lang}/subword/tfidf_lr/{n}'
            if not res.has(key):
                b = tfidf_baseline(train, va)
                res.put(key, dict(accuracy=round(b['accuracy'], 4), seconds=b['seconds']))

def write_md(res, out):
    runs, m = res.d['runs'], res.d['meta']
    langs = [l for l in LANGS if any(k.startswith(l + '/') for k in runs)]
    rows = [f"DDTP topic classification (8 classes), accuracy on `valid.csv`. {m['machine']}, {m['date']}; "
            f"LM size `{m['size']}` ({m['dims']}), vocab {m['vocab_sz']}, pretraining on the first {m['max_lines']} "
            f"paragraphs of `corpora/<lang>.txt.gz` + the train texts for {m['pretrain_epochs']} epoch(s), "
            f"fine-tuning {m['finetune_epochs']} epoch(s), classifier {m['clas_epochs']} epochs (+1 frozen epoch when pretrained); "
            f"LM batch {m.get('lm_bs')} at lr {m.get('lm_lr')} (fine-tuning {m.get('ft_lr')}), classifier batch {m.get('clas_bs')} at "
            + ("one flat lr " + str(m.get('clas_lr')) if m.get('clas_flat') else "the paper's discriminative slice") + '.', '',
            '| setting | ' + ' | '.join(langs) + ' |', '|---|' + '---|' * len(langs)]
    for n in (1000, 100):
        for name, label in [('subword/multifit_pretrained', 'MultiFiT, pretrained'), ('subword/multifit_no_pretraining', 'MultiFiT, no pretraining'),
                            ('subword/tfidf_lr', 'TF-IDF + LR'), ('word/multifit_pretrained', 'MultiFiT pretrained, word-level tokens')]:
            cells = [runs.get(f'{l}/{name}/{n}', {}).get('accuracy') for l in langs]
            if any(c is not None for c in cells):
                rows.append(f'| {label}, {n} labels | ' + ' | '.join('' if c is None else f'{c:.3f}' for c in cells) + ' |')
    rows += ['', '| time per language (s) | ' + ' | '.join(langs) + ' |', '|---|' + '---|' * len(langs)]
    for what, key, name in [('LM pretraining', 'seconds_pretrain', 'subword/multifit_pretrained/1000'),
                            ('LM fine-tuning', 'seconds_finetune', 'subword/multifit_pretrained/1000'),
                            ('classifier 1k (pretrained)', 'seconds_classifier', 'subword/multifit_pretrained/1000'),
                            ('classifier 1k (no pretraining)', 'seconds_classifier', 'subword/multifit_no_pretraining/1000')]:
        rows.append(f'| {what} | ' + ' | '.join(str(runs.get(f'{l}/{name}', {}).get(key, '')) for l in langs) + ' |')
    rows.append('| torch threads | ' + ' | '.join(str(runs.get(f'{l}/subword/multifit_pretrained/1000', {}).get('threads', '')) for l in langs) + ' |')
    rows.append('| classifier package (MB) | ' + ' | '.join(str(runs.get(f'{l}/subword/multifit_pretrained/1000', {}).get('model_mb', '')) for l in langs) + ' |')
    atomic_write_text(out, '\n'.join(rows) + '\n')

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--mldoc', type=Path, help='directory with MLDoc/CLS-layout CSVs instead of DDTP')
    ap.add_argument('--langs', nargs='+', default=LANGS)
    ap.add_argument('--word-langs', nargs='*', default=['de', 'ja', 'zh'])
    ap.add_argument('--size', default='demo'); ap.add_argument('--vocab-sz', type=int, default=8000)
    ap.add_argument('--max-lines', type=int, default=40000, help='corpus paragraphs used for pretraining')
    ap.add_argument('--pretrain-epochs', type=int, default=1); ap.add_argument('--finetune-epochs', type=int, default=2)
    ap.add_argument('--clas-epochs', type=int, default=6); ap.add_argument('--clas-bs', type=int, default=18)
    ap.add_argument('--lm-bs', type=int, default=16, help='LM batch size (paper: 50; small corpora need more steps)')
    ap.add_argument('--lm-lr', type=float, default=1e-2); ap.add_argument('--ft-lr', type=float, default=5e-3)
    ap.add_argument('--clas-lr', type=float, default=1e-2)
    ap.add_argument('--clas-flat', type=int, default=1, help="1: one flat classifier lr; 0: the paper's slice(lr/2.6**4, 2e-2)")
    ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--work', type=Path, default=HERE/'work'/'ddtp')
    ap.add_argument('--quick', action='store_true', help='tiny run of every path (minutes)')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    if a.quick: a.max_lines, a.pretrain_epochs, a.finetune_epochs, a.clas_epochs, a.vocab_sz, a.work = 1500, 1, 1, 2, 3000, a.work.with_name('ddtp_quick')
    from multifit_fastai.learner import SIZES
    dims = SIZES.get(a.size, {}) if not a.quick else dict(emb_sz=64, n_hid=128, n_layers=2)
    meta = dict(machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}',
                date=str(date.today()), size=a.size if not a.quick else 'quick', dims=dims, vocab_sz=a.vocab_sz, max_lines=a.max_lines,
                pretrain_epochs=a.pretrain_epochs, finetune_epochs=a.finetune_epochs, clas_epochs=a.clas_epochs, bptt=a.bptt,
                lm_bs=a.lm_bs, lm_lr=a.lm_lr, ft_lr=a.ft_lr, clas_bs=a.clas_bs, clas_lr=a.clas_lr, clas_flat=a.clas_flat)
    stem = 'ddtp_quick' if a.quick else ('mldoc' if a.mldoc else 'ddtp')
    res = Results(a.out/f'{stem}.json', meta)
    for lang in a.langs:
        print(f'== {lang}', flush=True)
        run_lang(a, res, lang, 'subword')
        write_md(res, a.out/f'{stem}.md')
    for lang in a.word_langs:
        if lang in a.langs:
            print(f'== {lang} word-level', flush=True)
            run_lang(a, res, lang, 'word')
            write_md(res, a.out/f'{stem}.md')
    print((a.out/f'{stem}.md').read_text())

if __name__ == '__main__': main()
