"""Diagnostic for the DDTP harness (not a test): does more LM pretraining put topic information into the features?

bench/ddtp.py pretrains its LMs on 20k corpus paragraphs (~1.1M tokens, one epoch) and finds pretrained MultiFiT no
better than MultiFiT without pretraining; bench/probe.py finds the features of that LM no more informative than those
of random weights. This script continues the question along one axis, pretraining tokens: one pretraining run of the
same `demo` LM (same tokenizer) streamed over the whole `corpora/<lang>.txt.gz`, with the encoder's weights
snapshotted every `--every` optimizer steps, then

  * a linear probe (bench/probe.py: frozen concat-pooled features + logistic regression, 1000 and 100 labels) on
    every snapshot, and
  * the full MultiFiT recipe (LM fine-tuning on the task texts + classifier, the harness' settings) from the final LM,

all scored on ddtp valid.csv. Snapshots are taken on the way through one one-cycle schedule (the learning rate is
still high in the middle), so the curve shows the trend, not what a shorter schedule would reach.

Run:   OMP_NUM_THREADS=2 .venv/bin/python bench/lm_scale.py --lang de
Writes bench/results/lm_scale.json (resumable: finished steps are kept) and bench/results/lm_scale.md.
"""
import argparse, json, platform, shutil, time
from datetime import date
from pathlib import Path
import torch
from fastai.callback.core import Callback
from multifit_fastai.pipeline import MultiFiT
from multifit_fastai.package import load_package
from multifit_fastai.core import atomic_write_json, atomic_write_text, atomic_write_with
from probe import ddtp_splits, probe_encoder, encoder_of

HERE = Path(__file__).resolve().parent

class EncoderSnapshots(Callback):
    "Save the LM encoder's weights before training and every `every` optimizer steps (atomically), with the tokens seen"
    order, run_valid = 70, False
    def __init__(self, path, every): self.path, self.every = Path(path), every
    def _save(self):
        n = int(self.learn.train_iter)
        if (self.path/f'step{n:06d}.pth').is_file(): return  # kept from before an interruption
        tokens = n * self.dls.train.bs * self.dls.train.seq_len
        sd = {k: v.detach().cpu().clone() for k, v in self.learn.model[0].state_dict().items()}
        atomic_write_with(self.path/f'step{n:06d}.pth', lambda f: torch.save(dict(state=sd, step=n, tokens=tokens), f))
    def before_fit(self): self.path.mkdir(parents=True, exist_ok=True); self._save()
    def after_batch(self):
        if self.training and self.learn.train_iter % self.every == 0: self._save()
    def after_fit(self): self._save()

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--lang', default='de')
    ap.add_argument('--tokenizer-from', default='bench/work/ddtp/{lang}-subword', help='experiment whose tokenizer to reuse')
    ap.add_argument('--arch-from', default='bench/work/ddtp/{lang}-subword/lm_pretrained', help='an LM package of the same size and tokenizer')
    ap.add_argument('--epochs', type=int, default=1); ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1e-2); ap.add_argument('--every', type=int, default=250)
    ap.add_argument('--ft-epochs', type=int, default=2); ap.add_argument('--ft-lr', type=float, default=5e-3)
    ap.add_argument('--clas-epochs', type=int, default=6); ap.add_argument('--clas-bs', type=int, default=18)
    ap.add_argument('--clas-lr', type=float, default=1e-2)
    ap.add_argument('--probe-only', action='store_true', help='only probe the snapshots written so far (e.g. of a stopped run)')
    ap.add_argument('--work', type=Path, default=HERE/'work'/'lm_scale')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'lm_scale')
    a = ap.parse_args()
    lang, work = a.lang, a.work/a.lang
    exp = MultiFiT(work, lang=lang, size='demo', vocab_sz=8000, overrides=dict(bptt=70))
    src = Path(a.tokenizer_from.format(lang=lang))/'tokenizer'
    if not exp.stage_path('tokenizer').is_dir(): shutil.copytree(src, exp.stage_path('tokenizer'))
    path = a.out.with_suffix('.json')
    res = json.loads(path.read_text()) if path.is_file() else {'probe': {}, 'recipe': {}}
    res.update(machine=f'{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}',
               updated=str(date.today()), settings=dict(lang=lang, size='demo', epochs=a.epochs, bs=a.bs, bptt=70, lr=a.lr,
                                                        every=a.every, corpus=f'corpora/{lang}.txt.gz (all of it, streamed)'))
    snaps = work/'snapshots'
    t0 = time.time()
    if not a.probe_only: exp.pretrain_lm([a.data/'corpora'/f'{lang}.txt.gz'], stream=True, n_workers=1, epochs=a.epochs, bs=a.bs, lr=a.lr,
                    cbs=[EncoderSnapshots(snaps, a.every)], save_every=a.every, resume=True)
    h = exp.history.get('pretrain', {})
    if not a.probe_only: res['pretrain'] = dict(seconds=h.get('seconds', round(time.time() - t0, 1)), steps=h.get('steps'),
                           tokens_per_epoch=h.get('tokens_per_epoch'), valid_perplexity=h.get('valid_perplexity'))
    atomic_write_json(path, res)
    tr, t100, va = ddtp_splits(a.data, lang)
    pkg = load_package(a.arch_from.format(lang=lang))  # same architecture and tokenizer as the snapshots
    for f in sorted(snaps.glob('step*.pth')):
        if f.stem in res['probe']: continue
        st = torch.load(f, weights_only=True)
        enc = encoder_of(pkg); enc.load_state_dict(st['state']); enc.eval()
        accs = probe_encoder(enc, pkg.tokenizer, tr, t100, va)
        res['probe'][f.stem] = dict(step=st['step'], tokens=st['tokens'], probe_1000=round(accs[1000], 4), probe_100=round(accs[100], 4))
        print(f'[{f.stem}] {res["probe"][f.stem]}', flush=True)
        atomic_write_json(path, res)
    if not a.probe_only and 'multifit_pretrained_1000' not in res['recipe']:
        t1 = time.time()
        exp.finetune_lm(list(tr.text), valid=list(va.text), epochs=a.ft_epochs, bs=16, lr=a.ft_lr)
        pkg_dir = exp.train_classifier(tr, valid=va, epochs=a.clas_epochs, name='clas_1000', encoder='auto', bs=a.clas_bs,
                                       lr=a.clas_lr, lr_low=None)
        pred = load_package(pkg_dir).predict(list(va.text))
        acc = float((pred.label.values == va.label.astype(str).values).mean())
        res['recipe']['multifit_pretrained_1000'] = dict(accuracy=round(acc, 4), seconds=round(time.time() - t1, 1))
        print(f'[recipe] {res["recipe"]}', flush=True)
        atomic_write_json(path, res)
    rows = ['| snapshot | pretraining tokens | probe, 1000 labels | probe, 100 labels |', '|---|---|---|---|']
    rows += [f'| step {v["step"]} | {v["tokens"]/1e6:.2f}M | {v["probe_1000"]:.3f} | {v["probe_100"]:.3f} |'
             for _, v in sorted(res['probe'].items())]
    p = res.get('pretrain', {})
    run = (f'{p.get("steps")} steps, {p.get("seconds")} s, final corpus valid perplexity {p.get("valid_perplexity")}' if p else
           'run stopped before the end of the schedule; snapshots up to the last row')
    atomic_write_text(a.out.with_suffix('.md'),
        f'LM pretraining tokens vs topic information in the features ({lang}, `demo` QRNN LM, bs {a.bs} x bptt 70, lr {a.lr}, '
        f'one-cycle over {a.epochs} epoch(s) of the whole corpus; {run}). {res["machine"]}, {res["updated"]}.\n\n' + '\n'.join(rows) +
        f'\n\nFull recipe from the final LM (fine-tuned {a.ft_epochs} epochs on the task texts, classifier {a.clas_epochs} '
        f'epochs at flat lr {a.clas_lr}), 1000 labels: {res["recipe"].get("multifit_pretrained_1000")}\n')

if __name__ == '__main__': main()
