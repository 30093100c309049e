"""Benchmark (not a test): batch prediction of a classifier package, `load_package(dir).predict(texts)`, against
fastai's own route on the same package (`from_pretrained(dir, dls)` + `learn.dls.test_dl(texts)` + `learn.get_preds()`).

    .venv/bin/python bench/predict.py           # full run: 1, 32 and 10k documents, 1 and 2 threads; writes
                                                #   bench/results/predict.{json,md}
    .venv/bin/python bench/predict.py --quick   # smoke run (random tiny package, few documents), writes nothing unless --out

Documents: German DDTP descriptions (`ddtp/de/unlabelled.csv.gz`, repeated to reach 10k). Package: a demo-size
classifier (emb 256, hidden 640, 3 layers, vocab 8000) from the in-domain fine-tuned LM of `bench/ddtp.py` when
`--lm` exists (head trained one epoch, encoder frozen), else randomly initialised and trained one epoch on
`train.csv` (so its classes are not near-ties); written with `save_pretrained`.
Each (route, size, threads) runs in a fresh process (`nice`d), the two routes alternating, so the peak RSS is that of
one prediction run; sizes 1 and 32 repeat `--reps` times after a warm-up, 10k runs once after a warm-up on 32
documents. Both routes use batch size 32, in fp32 and, where the CPU has native bf16, in bf16 (ours:
`predict(precision='bf16')`; fastai's: `get_preds` under `torch.autocast`), each bf16 run also compared with its route's fp32 run. Agreement: argmax of ours vs fastai's, and both vs each document predicted
alone by fastai's model (no padding) on the documents where they differ and on a sample.
"""
from __future__ import annotations
import argparse, datetime as dt, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from machine import cpu_model, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LM = HERE/'work'/'ddtp'/'de-subword-in_domain'/'lm_finetuned'  # bench/ddtp.py's in-domain LM, when it exists

def rss_mb(field: str = 'VmRSS') -> float:
    "Resident memory now (VmRSS) or its peak (VmHWM: this process image's own, unlike ru_maxrss, which keeps the peak of the process it was forked from)"
    for l in open('/proc/self/status'):
        if l.startswith(field + ':'): return int(l.split()[1]) / 1024
    return float('nan')

def load_texts(data: Path, n: int) -> list:
    import pandas as pd
    docs = [t for t in pd.read_csv(data/'ddtp'/'de'/'unlabelled.csv.gz', keep_default_na=False).text if t.strip()]
    return (docs * (n // len(docs) + 1))[:n]

def build_package(dest: Path, data: Path, lm: Path | None, tiny: bool) -> str:
    "Write the classifier package at `dest` (once); returns how it was made"
    import pandas as pd, torch
    from multifit_fastai.package import load_package
    from multifit_fastai.learner import text_dataloaders, multifit_classifier_learner, save_pretrained
    from multifit_fastai.tokenizer import SPTokenizer
    from multifit_fastai.core import atomic_write_text
    how = dest/'made_how.txt'
    if (dest/'pkg'/'config.json').exists() and how.exists(): return how.read_text()
    tr, va = (pd.read_csv(data/'ddtp'/'de'/f'{s}.csv') for s in ('train', 'valid'))
    if lm is not None and lm.is_dir() and not tiny:
        dls = text_dataloaders(load_package(lm).tokenizer, tr, va, label_col='label', bs=32, seq_len=70, max_len=1400)
        learn = multifit_classifier_learner(dls, preset='demo', pretrained=lm)
        learn.fit_one_cycle(1, 2e-2)
        made = f'encoder of {lm} (in-domain fine-tuned LM), head trained 1 epoch on ddtp/de/train.csv (encoder frozen)'
    else:
        sz = dict(emb_sz=16, n_hid=24, n_layers=2, vocab_sz=300) if tiny else dict(vocab_sz=8000)
        tok = SPTokenizer.train(list(tr.text) + list(va.text), lang='de', vocab_sz=sz['vocab_sz'])
        dls = text_dataloaders(tok, tr, va, label_col='label', bs=32, seq_len=70, max_len=1400)
        learn = multifit_classifier_learner(dls, preset='demo', **sz)
        if not tiny: learn.fit_one_cycle(1, 1e-2)  # trained, so that its classes are not near-ties
        made = (f'randomly initialised ({"tiny" if tiny else "demo size, whole model trained 1 epoch on ddtp/de/train.csv"}), '
                'tokenizer trained on ddtp/de train+valid')
    save_pretrained(learn, dest/'pkg')
    atomic_write_text(how, made)
    return made

# ------------------------------------------------------------------------------------------------------ one child run
def fastai_learner(pkg_dir: Path, data: Path):
    import pandas as pd
    from multifit_fastai.package import load_package
    from multifit_fastai.learner import text_dataloaders, from_pretrained
    pkg = load_package(pkg_dir)
    tr = pd.read_csv(data/'ddtp'/'de'/'train.csv')
    tr = tr[tr.label.astype(str).isin(pkg.labels)]
    dls = text_dataloaders(pkg.tokenizer, tr[:64], tr[64:96], label_col='label', bs=32, seq_len=pkg.config['bptt'],
                           max_len=pkg.config['max_len'], vocab=pkg.labels,
                           num_workers=None)  # fastai's default loader workers (one per core), as a fastai user gets
    return from_pretrained(pkg_dir, dls)

def child(a):
    import torch
    torch.set_num_threads(a.threads)
    from multifit_fastai.package import load_package
    texts = load_texts(a.data, a.n)
    warm = load_texts(a.data, 32)
    from multifit_fastai.precision import autocast_context
    if a.child == 'ours':
        pkg = load_package(a.pkg)
        pred = lambda t: pkg.predict(t, bs=32, precision=a.precision)[pkg.labels].values
    else:
        learn = fastai_learner(a.pkg, a.data)
        def pred(t):  # fastai's route, its products under autocast for bf16
            with autocast_context(a.precision): return learn.get_preds(dl=learn.dls.test_dl(t, bs=32))[0].float().numpy()
    t0 = time.perf_counter(); pred(warm[:1]); first = time.perf_counter() - t0  # ours: builds the model and the table
    run = lambda: pred(texts)
    run() if a.n < 1000 else None
    pred(warm)
    rss0 = rss_mb()
    walls, cpus = [], []
    for _ in range(a.reps if a.n < 1000 else 1):
        c0, w0 = time.process_time(), time.perf_counter()
        p = run()
        cpus.append(time.process_time() - c0); walls.append(time.perf_counter() - w0)
    np.save(a.preds, p.astype(np.float32))
    w = statistics.median(walls)
    print(json.dumps(dict(route=a.child, n=a.n, threads=a.threads, precision=a.precision, wall_s=w, cpu_s=statistics.median(cpus),
                          docs_per_s=a.n / w, walls=[round(x, 4) for x in walls], first_call_s=round(first, 3),
                          rss_before_mb=round(rss0, 1), peak_rss_mb=round(rss_mb('VmHWM'), 1))))

def run_child(a, route, n, threads, preds: Path, precision: str) -> dict:
    cmd = ['nice', sys.executable, __file__, '--child', route, '--n', str(n), '--threads', str(threads), '--reps', str(a.reps),
           '--precision', precision,
           '--pkg', str(a.pkg), '--data', str(a.data), '--preds', str(preds)]
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONPATH': str(REPO)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if r.returncode: raise SystemExit(f'{route} n={n} threads={threads} failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])

def alone_check(pkg_dir: Path, texts: list, ours, theirs, sample: int) -> dict:
    "Both routes vs each document predicted alone by fastai's model: where they disagree, and on a sample"
    import torch
    from multifit_fastai.package import load_package
    pkg = load_package(pkg_dir); m, n = pkg.model(), len(texts)
    diff = np.nonzero(ours.argmax(1) != theirs.argmax(1))[0]
    idx = np.unique(np.concatenate([diff, np.linspace(0, n - 1, min(sample, n)).astype(int)]))
    ids = pkg.tokenizer.encode_batch([texts[i] for i in idx])
    with torch.no_grad():
        alone = np.stack([torch.softmax(m(ids[k][-pkg.config['max_len']:][None])[0], -1)[0].numpy() for k in range(len(idx))])
    return dict(n_checked=len(idx), n_disagree=len(diff),
                ours_max_abs_diff_vs_alone=float(abs(ours[idx] - alone).max()),
                fastai_max_abs_diff_vs_alone=float(abs(theirs[idx] - alone).max()),
                ours_argmax_vs_alone=float((ours[idx].argmax(1) == alone.argmax(1)).mean()),
                fastai_argmax_vs_alone=float((theirs[idx].argmax(1) == alone.argmax(1)).mean()),
                fastai_wrong_docs_token_lens=[int(len(ids[k])) for k in range(len(idx)) if theirs[idx[k]].argmax() != alone[k].argmax()][:20])

def markdown(R) -> str:
    m = R['meta']
    L = [f'**Machine:** {m["cpu_model"]}, {m["n_cpus"]} cores (shared with other jobs: load average {m["load"]}), torch '
         f'{m["torch"]}, Python {m["python"]}; **date:** {m["date"]}.', '',
         f'**Package:** {m["package"]["made"]}; {m["package"]["arch"]}, emb {m["package"]["emb_sz"]}, hidden '
         f'{m["package"]["n_hid"]}, {m["package"]["n_layers"]} layers, vocab {m["package"]["vocab_sz"]}, bptt '
         f'{m["package"]["bptt"]}, max_len {m["package"]["max_len"]}, {m["package"]["n_class"]} classes. **Texts:** German '
         f'DDTP descriptions, {m["tokens_per_doc"]:.0f} tokens per document on average. Batch size 32 in both routes; '
         'each run a fresh process, the routes alternating; median of '
         f'{m["reps"]} runs for 1 and 32 documents, one run for 10k; wall time.', '',
         '| threads | precision | documents | ours docs/s | fastai docs/s | ours / fastai | argmax agreement ours vs fastai '
         '| agreement with fp32 (ours / fastai) | peak RSS ours / fastai (MB) |',
         '|---|---|---|---|---|---|---|---|---|']
    for r in R['runs']:
        vs32 = f'{100 * r["ours_vs_fp32"]:.2f} % / {100 * r["fastai_vs_fp32"]:.2f} %' if 'ours_vs_fp32' in r else ''
        L.append(f'| {r["threads"]} | {r["precision"]} | {r["n"]:,} | {r["ours"]["docs_per_s"]:.1f} | {r["fastai"]["docs_per_s"]:.1f} | '
                 f'**{r["ratio"]:.2f}** | {100 * r["agreement"]:.2f} % | {vs32} | {r["ours"]["peak_rss_mb"]:.0f} / {r["fastai"]["peak_rss_mb"]:.0f} |')
    for p, why in R['skipped'].items(): L.append(f'| 1, 2 | {p} | all | skipped: {why} | | | | | |')
    for k, c in R['alone'].items():
        L += ['', f'**Against each document alone** ({k}; fastai\'s model on the unpadded document, {c["n_checked"]} documents: '
              f'the {c["n_disagree"]} where the routes disagree plus a sample): ours agrees on {100 * c["ours_argmax_vs_alone"]:.1f} % '
              f'(max abs probability difference {c["ours_max_abs_diff_vs_alone"]:.1e}), fastai\'s route on '
              f'{100 * c["fastai_argmax_vs_alone"]:.1f} % (max difference {c["fastai_max_abs_diff_vs_alone"]:.2f}).']
    L += ['', R['notes']]
    return '\n'.join(L) + '\n'

NOTES = """fastai's route pads with `Pad_Chunk` (whole bptt chunks in front, the rest at the end) and its `SentenceEncoder`
picks the rows of each chunk from the chunk's first token, so when a batch's longest document is not a whole number of
chunks, a shorter document whose last chunk starts on end padding is skipped there and pooled over zeros: its result
depends on its batch. Ours pads at the end only and tracks each row's length, so every document gets the result it gets
alone; the argmax disagreements above are these documents (all of them fastai's). Peak RSS is the process's maximum
(model, tokenizer, the first-layer table of 2 x 61 MB for ours, the texts and the outputs included)."""

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--child', choices=['ours', 'fastai']); p.add_argument('--n', type=int); p.add_argument('--preds', type=Path)
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2]); p.add_argument('--sizes', type=int, nargs='+', default=[1, 32, 10000])
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--precision', default='fp32', help='(child runs) fp32 or bf16')
    p.add_argument('--data', type=Path, default=Path(os.environ.get('MULTIFIT_SHARED_DATA', REPO.parent/'shared'/'data')))
    p.add_argument('--lm', type=Path, default=LM); p.add_argument('--pkg', type=Path, default=None)
    p.add_argument('--work', type=Path, default=HERE/'work'/'predict'); p.add_argument('--out', type=Path, default=None)
    p.add_argument('--quick', action='store_true', help='tiny random package, 1/8/40 documents, 1 thread, 2 reps')
    a = p.parse_args()
    if a.child:
        a.threads = a.threads[0]; return child(a)
    if a.quick: a.sizes, a.threads, a.reps, a.work = [1, 8, 40], [1], 2, a.work.with_name('predict_quick')
    out = a.out or (None if a.quick else HERE/'results')
    import torch
    from multifit_fastai.precision import cpu_has_fast_bf16, cpu_bf16_flags
    from multifit_fastai.package import load_package
    made = build_package(a.work, a.data, a.lm, a.quick)
    a.pkg = a.work/'pkg'
    cfg = load_package(a.pkg).config
    texts = load_texts(a.data, max(a.sizes))
    from multifit_fastai.package import load_package as lp
    tok_lens = lp(a.pkg).tokenizer.encode_batch(texts[:2000]).lens
    R = dict(meta=dict(date=dt.datetime.now().astimezone().isoformat(timespec='seconds'), cpu_model=cpu_model(),
                       n_cpus=os.cpu_count(), load=' '.join(f'{x:.1f}' for x in os.getloadavg()), torch=torch.__version__,
                       python=platform.python_version(), reps=a.reps, tokens_per_doc=float(tok_lens.mean()),
                       package=dict(made=made, **{k: cfg['model_config'][k] for k in ('emb_sz', 'n_hid', 'n_layers')},
                                    **{k: cfg[k] for k in ('arch', 'vocab_sz', 'bptt', 'max_len', 'n_class')})),
             runs=[], skipped={}, alone={}, notes=NOTES)
    if not cpu_has_fast_bf16():
        R['skipped']['bf16'] = (f'this CPU has no native bf16 instructions (bf16 flags: {sorted(cpu_bf16_flags()) or "none"}; '
                                '`cpu_has_fast_bf16()` is False), where bf16 runs slower than fp32')
    precisions = ['fp32'] + (['bf16'] if cpu_has_fast_bf16() else [])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        npy = lambda route, prec: Path(tmp)/f'{route}-{prec}.npy'
        for threads in a.threads:
            for i, n in enumerate(a.sizes):
                for prec in precisions:
                    res = {}
                    for route in (('ours', 'fastai') if i % 2 == 0 else ('fastai', 'ours')):
                        res[route] = run_child(a, route, n, threads, npy(route, prec), prec)
                        print(f'threads {threads} {prec} n {n} {route}: {res[route]["docs_per_s"]:.1f} docs/s, '
                              f'peak {res[route]["peak_rss_mb"]} MB', flush=True)
                    po, pf = np.load(npy('ours', prec)), np.load(npy('fastai', prec))
                    row = dict(threads=threads, precision=prec, n=n, ours=res['ours'], fastai=res['fastai'],
                               ratio=res['ours']['docs_per_s'] / res['fastai']['docs_per_s'],
                               agreement=float((po.argmax(1) == pf.argmax(1)).mean()))
                    if prec != 'fp32':  # each route against its own fp32 predictions of the same documents
                        row['ours_vs_fp32'] = float((po.argmax(1) == np.load(npy('ours', 'fp32')).argmax(1)).mean())
                        row['fastai_vs_fp32'] = float((pf.argmax(1) == np.load(npy('fastai', 'fp32')).argmax(1)).mean())
                    R['runs'].append(row)
                    if n == max(a.sizes) and threads == a.threads[0] and prec == 'fp32':
                        R['alone'][f'{n:,} documents'] = alone_check(a.pkg, texts[:n], po, pf, 200 if not a.quick else 10)
    R['meta']['bench_wall_s'] = round(time.perf_counter() - t0, 1)
    print(markdown(R))
    if out:
        write_results(out, 'predict', R, markdown(R))
        print(f'wrote {out}/predict.json and .md')


if __name__ == '__main__': main()
