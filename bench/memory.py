"""Memory benchmark (not a test): resident memory (RSS) of LM pretraining per epoch, for the in-memory LM data path
(`MultiFiT.pretrain_lm(texts)`, fastai's `LMDataLoader`) and the memory-mapped one (`pretrain_lm(files, stream=True)`).

Each run is a fresh process (`nice`d) that trains a tokenizer, then pretrains for `--epochs` epochs and samples its RSS
(`/proc/self/status` VmRSS) every `--every` optimizer steps and at the end of each epoch. Data: the German DDTP
`unlabelled.csv.gz` documents (or the first `--docs` of them); the embedded German sample corpus if the data folder
is absent. Sizes: `tiny` (emb 32, hidden 48, 2 layers) and `demo` (emb 256, hidden 640, 3 layers), bs 32, bptt 70.
Flat memory means: the RSS at the end of epoch 3 is within a few MB per epoch of the end of epoch 1.

Run:   nice .venv/bin/python bench/memory.py [--sizes tiny demo] [--paths memory memmap] [--epochs 3] [--docs 2000]
Writes bench/results/memory.json and .md (`--tag` names the run, e.g. before/after a change; results are merged).
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {'tiny': dict(emb_sz=32, n_hid=48, n_layers=2), 'demo': dict(emb_sz=256, n_hid=640, n_layers=3)}

def rss_mb() -> float:
    "Resident set size of this process in MB"
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1]) / 1024
    return float('nan')

def heap_mb() -> dict:
    "glibc's view of the heap (`mallinfo2`): MB in use by live allocations and MB free but kept by the allocator"
    import ctypes
    class MI(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in
        'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]
    try: f = ctypes.CDLL('libc.so.6').mallinfo2
    except (OSError, AttributeError): return {}
    f.restype = MI; m = f()
    return dict(in_use_mb=round((m.uordblks + m.hblkhd) / 2**20, 1), free_kept_mb=round(m.fordblks / 2**20, 1))

def load_docs(data: Path, n: int | None) -> list:
    "German DDTP unlabelled documents (multi-line texts), or the embedded sample corpus"
    import pandas as pd
    f = data/'ddtp'/'de'/'unlabelled.csv.gz'
    if f.is_file(): docs = [t for t in pd.read_csv(f, keep_default_na=False).text if t.strip()]
    else:
        from multifit_fastai.data import sample_data
        docs = sample_data().corpus()
    return docs[:n] if n else docs

def child(a):
    "One run in this process: print a JSON line with the RSS samples"
    import torch
    from fastai.callback.core import Callback
    from multifit_fastai.pipeline import MultiFiT
    torch.set_num_threads(a.threads)
    class RSSLog(Callback):
        "Record (step, RSS MB) every `every` training steps and at the end of each epoch"
        order = 99
        def __init__(self, every): self.every, self.steps, self.epochs, self.heap = every, [], [], []
        def after_batch(self):
            if self.training and self.train_iter % self.every == 0:
                self.steps.append((int(self.train_iter), round(rss_mb(), 1)))
                print(f'step {self.steps[-1][0]} rss {self.steps[-1][1]} MB', file=sys.stderr, flush=True)
        def after_epoch(self):
            self.epochs.append(round(rss_mb(), 1)); self.heap.append(heap_mb())
            print(f'epoch {self.epoch} rss {self.epochs[-1]} MB heap {self.heap[-1]}', file=sys.stderr, flush=True)
    docs = load_docs(a.data, a.docs)
    with tempfile.TemporaryDirectory() as d:
        exp = MultiFiT(Path(d)/'exp', lang='de', size='demo', overrides=dict(SIZES[a.size], seed=0), vocab_sz=a.vocab_sz,
                       verbose=False)
        exp.train_tokenizer(docs[:4000])
        log, t0, rss0 = RSSLog(a.every), time.time(), rss_mb()
        if a.path == 'memmap':
            f = Path(d)/'docs.txt'
            f.write_text('\n'.join(' '.join(t.split()) for t in docs) + '\n', encoding='utf-8')
            exp.pretrain_lm(f, stream=True, n_workers=1, epochs=a.epochs, bs=a.bs, cbs=[log])
        else: exp.pretrain_lm(docs, epochs=a.epochs, bs=a.bs, cbs=[log])
        h = exp.history['pretrain']
    print('RESULT ' + json.dumps(dict(size=a.size, path=a.path, docs=len(docs), epochs=a.epochs, bs=a.bs, steps=h['steps'],
                                      tokens_per_epoch=h['tokens_per_epoch'], seconds=round(time.time() - t0, 1),
                                      rss_before_fit_mb=round(rss0, 1), rss_per_epoch_mb=log.epochs, heap_per_epoch=log.heap, rss_steps=log.steps,
                                      growth_per_epoch_mb=round((log.epochs[-1] - log.epochs[0]) / max(1, len(log.epochs) - 1), 1))))

def _heap(r) -> str:
    h = (r.get('heap_per_epoch') or [{}])[-1]
    return f"{h['in_use_mb']:.0f} / {h['free_kept_mb']:.0f}" if h else 'n/a'

FINDINGS = '''`before` is the library without `ReleaseMemory`, `after` with it (every MultiFiT learner carries it: `malloc_trim(0)`
every 100 training steps and after each epoch, and the recorder's per-step losses kept as floats). What accumulates
is not a Python object or a tensor that the library or fastai holds: glibc's count of live heap bytes (`in use`,
`mallinfo2`) stays the same from epoch to epoch in every run that records it (the two in-memory `before` runs predate that column). The growth is memory glibc keeps after each step's
activation, gradient and per-document tensors are freed (one heap per thread, a dynamic mmap threshold), and RSS
counts it. `malloc_trim` hands those pages back, so RSS stays at its first-epoch level. (`free but kept` is glibc's
free-list total; trimmed pages stay on that list but no longer count in RSS.)'''

def table(runs: dict) -> str:
    rows = ['| run | size | path | docs | steps | s | RSS before fit | RSS after each epoch (MB) | growth/epoch (MB) | '
            'heap in use / free but kept, last epoch (MB) |', '|---|---|---|---|---|---|---|---|---|---|']
    for tag, rs in runs.items():
        for r in rs:
            rows.append(f"| {tag} | {r['size']} | {r['path']} | {r['docs']} | {r['steps']} | {r['seconds']:.0f} | "
                        f"{r['rss_before_fit_mb']:.0f} | {' / '.join(f'{x:.0f}' for x in r['rss_per_epoch_mb'])} | "
                        f"{r['growth_per_epoch_mb']:+.1f} | {_heap(r)} |")
    return '\n'.join(rows)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=Path(os.environ.get('MULTIFIT_SHARED_DATA', HERE.parents[1]/'shared'/'data')))
    ap.add_argument('--sizes', nargs='+', default=['tiny', 'demo'], choices=sorted(SIZES))
    ap.add_argument('--paths', nargs='+', default=['memory', 'memmap'], choices=['memory', 'memmap'])
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--docs', type=int, help='first N documents (default: all)')
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--vocab-sz', type=int, default=2000)
    ap.add_argument('--every', type=int, default=20, help='RSS sample every N steps')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--nice', type=int, default=10, help='niceness of the runs (default: %(default)s)')
    ap.add_argument('--verbose', action='store_true', help='show the runs\' progress (RSS every --every steps)')
    ap.add_argument('--tag', default='run', help='name of this set of runs in the results')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--size', default='tiny', help=argparse.SUPPRESS); ap.add_argument('--path', default='memory', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a)
    res_f = a.out/'memory.json'
    res = json.loads(res_f.read_text()) if res_f.is_file() else {}
    runs = res.setdefault('runs', {})
    runs.setdefault(a.tag, [])
    for size in a.sizes:
        for path in a.paths:
            cmd = ['nice', '-n', str(a.nice), sys.executable, __file__, '--child', '--size', size, '--path', path, '--epochs', str(a.epochs),
                   '--bs', str(a.bs), '--vocab-sz', str(a.vocab_sz), '--every', str(a.every), '--threads', str(a.threads),
                   '--data', str(a.data)] + (['--docs', str(a.docs)] if a.docs else [])
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if a.verbose else subprocess.PIPE, text=True,
                               env={**os.environ, 'OMP_NUM_THREADS': str(a.threads)})
            line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
            if r.returncode or not line: sys.exit(f'{size}/{path} failed:\n{(r.stderr or "")[-3000:]}')
            runs[a.tag] = [r for r in runs[a.tag] if (r['size'], r['path']) != (size, path)] + [json.loads(line[-1][7:])]
            print(json.dumps(runs[a.tag][-1])[:400], flush=True)
    from multifit_fastai.core import atomic_write_json, atomic_write_text
    import torch, multifit_fastai
    res['machine'] = dict(platform=platform.platform(), cpus=os.cpu_count(), threads=a.threads, torch=torch.__version__,
                          library=multifit_fastai.__version__, date=str(date.today()))
    atomic_write_json(res_f, res)
    atomic_write_text(a.out/'memory.md', '# LM pretraining: resident memory per epoch\n\n' + (__doc__.split('\n\n')[1]) +
                      '\n\n' + table(runs) + '\n\n' + FINDINGS + f"\n\nMachine: {res['machine']}\n")

if __name__ == '__main__': main()
