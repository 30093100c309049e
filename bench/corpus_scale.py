"""Corpus-scale benchmark (not a test): tokenization throughput into a memory-mapped token corpus with 1 vs 2
worker processes, and the peak memory (RSS) of a pretraining run streaming a 1x and a 10x corpus.

1x = the 8 files ../shared/data/corpora/*.txt.gz back to back; 10x = ten copies of that list (tokenized for real).
Tokenizer: one 15k SentencePiece model trained on 40k lines of each language. Pretraining: `cpu-small` QRNN LM
(emb 400, hidden 1152, 3 layers) with the paper's LM batch (bs 50, bptt 70), a fixed number of optimizer steps, each in
a fresh process that reports its peak RSS (VmHWM). Target: peak RSS at 10x within +10 % of 1x.

Run:   .venv/bin/python bench/corpus_scale.py [--steps 30] [--copies 10]
Writes bench/results/corpus_scale.json and .md; work files in bench/work/corpus_scale (about 1 GB at 10x).
"""
import argparse, json, os, platform, subprocess, sys, time
from datetime import date
from pathlib import Path
import torch
from multifit_fastai.core import read_lines, atomic_write_json, atomic_write_text
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.corpus import tokenize_corpus

HERE = Path(__file__).resolve().parent
LANGS = ['de', 'en', 'es', 'fr', 'it', 'ja', 'ru', 'zh']

CHILD = r'''
import json, os, sys, time, resource
import torch
from fastai.callback.core import Callback, CancelFitException
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.corpus import TokenCorpus, corpus_dataloaders
from multifit_fastai.learner import multifit_lm_learner
def rss(field):
    for l in open('/proc/self/status'):
        if l.startswith(field): return int(l.split()[1]) * 1024
tok = SPTokenizer.load(sys.argv[2]); steps = int(sys.argv[3])
t0 = time.time()
corpus = TokenCorpus.open(sys.argv[1], tok)
dls = corpus_dataloaders(corpus, valid_docs=2000, bs=50, seq_len=70, seed=0)
loader_bytes = sum(a.nbytes for a in (dls.train.dataset.lens, dls.train.block_cum))
class Stop(Callback):
    order = 99
    def after_batch(self):
        if self.training and self.train_iter == 1: self.learn.t1 = time.time()
        if self.training and self.train_iter >= steps: raise CancelFitException
learn = multifit_lm_learner(dls, preset='cpu-small', seed=0)
with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-3, cbs=Stop())
order_bytes = dls.train.order.nbytes if dls.train.order is not None else 0
print(json.dumps(dict(n_docs=corpus.n_docs, n_tokens=corpus.n_tokens, batches_per_epoch=len(dls.train), steps=int(learn.train_iter),
                      peak_rss_mb=round(rss('VmHWM:') / 2**20, 1), final_rss_mb=round(rss('VmRSS:') / 2**20, 1),
                      loader_arrays_mb=round((loader_bytes + order_bytes) / 2**20, 2),
                      sec_per_step=round((time.time() - learn.t1) / max(1, learn.train_iter - 1), 3))))
'''

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--work', type=Path, default=HERE/'work'/'corpus_scale')
    ap.add_argument('--copies', type=int, default=10)
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    files = [a.data/'corpora'/f'{l}.txt.gz' for l in LANGS]
    res = dict(machine=f'{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, OMP threads {torch.get_num_threads()}',
               date=str(date.today()), files=[f.name for f in files], copies=a.copies, steps=a.steps)
    tok_dir = a.work/'tokenizer'
    if (tok_dir/'tokenizer.json').is_file(): tok = SPTokenizer.load(tok_dir)
    else:
        sample = [t for f in files for t in read_lines(f, max_lines=40_000)]
        t0 = time.time(); tok = SPTokenizer.train(sample, lang='xx', vocab_sz=15000); tok.save(tok_dir)
        res['tokenizer_train_s'] = round(time.time() - t0, 1)
    res['mb_1x'] = round(sum(sum(len(l.encode()) + 1 for l in read_lines(f)) for f in files) / 1e6, 1)

    # 1. tokenization throughput, 1 vs 2 processes, on the 1x corpus (fresh folders, timed in one run)
    res['tokenize'] = {}
    for n in (1, 2):
        out = a.work/f'tok_1x_{n}proc'
        t0 = time.time(); c = tokenize_corpus(files, tok, out, n_workers=n, overwrite=True); s = time.time() - t0
        res['tokenize'][f'{n}proc'] = dict(seconds=round(s, 1), tokens=c.n_tokens, docs=c.n_docs, tokens_per_s=round(c.n_tokens / s))
        print(f'tokenize 1x with {n} process(es): {c.n_tokens:,} tokens in {s:.1f}s', flush=True)
    res['tokenize']['speedup_2proc'] = round(res['tokenize']['1proc']['seconds'] / res['tokenize']['2proc']['seconds'], 2)
    same = (a.work/'tok_1x_1proc'/'ids.bin').read_bytes() == (a.work/'tok_1x_2proc'/'ids.bin').read_bytes()
    res['tokenize']['identical_files'] = same

    # 2. the 10x corpus, tokenized with 2 processes
    big = a.work/f'tok_{a.copies}x'
    t0 = time.time(); c10 = tokenize_corpus(files * a.copies, tok, big, n_workers=2, overwrite=True); s = time.time() - t0
    res['tokenize'][f'{a.copies}x_2proc'] = dict(seconds=round(s, 1), tokens=c10.n_tokens, docs=c10.n_docs,
                                               ids_mb=round((big/'ids.bin').stat().st_size / 1e6, 1))
    print(f'tokenize {a.copies}x: {c10.n_tokens:,} tokens in {s:.1f}s', flush=True)

    # 3. peak RSS of pretraining runs (fresh processes), 1x then 10x then 1x again
    res['pretrain'] = {}
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2')}
    for name, path in [('1x', a.work/'tok_1x_2proc'), (f'{a.copies}x', big), ('1x_again', a.work/'tok_1x_2proc')]:
        r = subprocess.run([sys.executable, '-c', CHILD, str(path), str(tok_dir), str(a.steps)], capture_output=True, text=True, env=env)
        if r.returncode: sys.exit(r.stderr[-3000:])
        res['pretrain'][name] = json.loads(r.stdout.strip().splitlines()[-1])
        print(name, res['pretrain'][name], flush=True)
    base = min(res['pretrain']['1x']['peak_rss_mb'], res['pretrain']['1x_again']['peak_rss_mb'])
    res['rss_ratio_10x_vs_1x'] = round(res['pretrain'][f'{a.copies}x']['peak_rss_mb'] / base, 3)
    res['target_met'] = res['rss_ratio_10x_vs_1x'] <= 1.10
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out/'corpus_scale.json', res)
    t, p = res['tokenize'], res['pretrain']
    big_k = f'{a.copies}x'
    md = [f"Corpus scale, {res['machine']}, {res['date']}. 1x = the 8 `corpora/*.txt.gz` files ({res['mb_1x']} MB of text), "
          f"{big_k} = {a.copies} copies of them; one 15k SentencePiece tokenizer; `cpu-small` QRNN LM, batch 50 x bptt 70, "
          f"{a.steps} optimizer steps per run, each run a fresh process.", '',
          '| tokenization (1x) | seconds | tokens/s |', '|---|---|---|',
          f"| 1 process | {t['1proc']['seconds']} | {t['1proc']['tokens_per_s']:,} |",
          f"| 2 processes | {t['2proc']['seconds']} | {t['2proc']['tokens_per_s']:,} |",
          f"| speed-up | {t['speedup_2proc']}x | identical output: {t['identical_files']} |", '',
          f"{big_k}: {t[big_k + '_2proc']['tokens']:,} tokens, {t[big_k + '_2proc']['docs']:,} documents, "
          f"ids file {t[big_k + '_2proc']['ids_mb']} MB, tokenized in {t[big_k + '_2proc']['seconds']} s with 2 processes.", '',
          '| pretraining run | documents | tokens | batches/epoch | peak RSS (MB) | loader arrays (MB) | s/step |', '|---|---|---|---|---|---|---|']
    md += [f"| {k} | {v['n_docs']:,} | {v['n_tokens']:,} | {v['batches_per_epoch']:,} | {v['peak_rss_mb']} | {v['loader_arrays_mb']} | {v['sec_per_step']} |"
           for k, v in p.items()]
    md += ['', f"Peak RSS {big_k} / 1x (the lower of the two 1x runs): **{res['rss_ratio_10x_vs_1x']}** "
               f"(target <= 1.10: {'met' if res['target_met'] else 'NOT met'})."]
    atomic_write_text(a.out/'corpus_scale.md', '\n'.join(md) + '\n')
    print('\n'.join(md))

if __name__ == '__main__': main()
