"""Diagnostic for the DDTP harness (not a test): how much topic information is in a QRNN LM's features?

A *linear probe*: every text is run once through a language model's encoder (eval mode, no dropout), its last
layer's outputs are concat-pooled exactly like the MultiFiT classifier head's input (last step, max, mean), and a
logistic regression is fitted on those frozen features with 1000 (train.csv) or 100 (train_100.csv) labels. Accuracy
on valid.csv. Probing the same architecture with random weights (no pretraining), with the corpus-pretrained weights
and with the fine-tuned weights separates two questions: does the LM's pretraining put topic information into its
features at all (probe pretrained > probe random), and does the classifier fine-tuning use it (fine-tuned classifier
vs probe)?

Run:  .venv/bin/python bench/probe.py --langs de ja --lm 'bench/work/ddtp/{lang}-subword/lm_pretrained' \
          'bench/work/ddtp/{lang}-subword/lm_finetuned'  [--snapshots DIR ...]
Writes bench/results/probe.json (entries keyed lang|model|n_labels, resumable) and bench/results/probe.md.
"""
import argparse, json, platform, time
from datetime import date
from pathlib import Path
import numpy as np, pandas as pd, torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from fastai.text.all import get_language_model
from multifit_fastai.learner import load_package, ARCHS
from multifit_fastai.core import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent

@torch.no_grad()
def features(encoder, tok, texts, bs=32) -> np.ndarray:
    "Concat-pooled (last, max, mean) last-layer outputs of `encoder` for every text; one padded batch at a time"
    ids = tok.encode_batch(list(texts))
    order = np.argsort([-len(o) for o in ids], kind='stable')
    out = None
    for i in range(0, len(ids), bs):
        idx = order[i:i + bs]
        lens = torch.tensor([len(ids[j]) for j in idx])
        x = torch.full((len(idx), int(lens.max())), 1, dtype=torch.long)  # right-padded; pads masked below
        for r, j in enumerate(idx): x[r, :lens[r]] = torch.as_tensor(ids[j])
        encoder.reset()
        h = encoder(x)  # bs x seq x emb
        mask = (torch.arange(h.shape[1])[None] < lens[:, None]).unsqueeze(-1)
        last = h[torch.arange(len(idx)), lens - 1]
        mx = h.masked_fill(~mask, -float('inf')).max(1).values
        mean = (h * mask).sum(1) / lens[:, None]
        f = torch.cat([last, mx, mean], 1).numpy()
        if out is None: out = np.empty((len(ids), f.shape[1]), dtype=np.float32)
        out[idx] = f
    return out

def encoder_of(pkg, random_init=False, seed=0):
    c = pkg.config
    if random_init:
        torch.manual_seed(seed)
        m = get_language_model(ARCHS[c['arch']], c['vocab_sz'], config=dict(c['model_config']), drop_mult=c.get('drop_mult', 1.))
    else: m = pkg.model()
    # the QRNN's right-padding is safe here: a position's output depends only on earlier positions
    return m[0].eval()

def probe(Xtr, ytr, Xva, yva, C=0.1) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    clf.fit(Xtr, ytr)
    return float((clf.predict(Xva) == yva).mean())

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--langs', nargs='+', default=['de'])
    ap.add_argument('--lm', nargs='+', required=True, help="LM package dirs, '{lang}' is replaced")
    ap.add_argument('--random', type=int, default=1, help='also probe the first LM architecture with random weights')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'probe')
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = a.out.with_suffix('.json')
    res = json.loads(path.read_text()) if path.is_file() else {'entries': {}}
    res['machine'] = f'{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)'
    res['updated'] = str(date.today())
    for lang in a.langs:
        d = a.data/'ddtp'/lang
        tr, t100, va = (pd.read_csv(d/f'{s}.csv') for s in ('train', 'train_100', 'valid'))
        models = [(p.format(lang=lang), False) for p in a.lm]
        if a.random: models.insert(0, (models[0][0], True))
        for p, rnd in models:
            name = 'random init' if rnd else Path(p).parent.name + '/' + Path(p).name
            keys = [f'{lang}|{name}|{n}' for n in (1000, 100)]
            if all(k in res['entries'] for k in keys): continue
            t0 = time.time()
            pkg = load_package(p)
            enc = encoder_of(pkg, rnd)
            Xtr, X100, Xva = (features(enc, pkg.tokenizer, df.text) for df in (tr, t100, va))
            for k, (X, df) in zip(keys, [(Xtr, tr), (X100, t100)]):
                acc = probe(X, df.label.astype(str).values, Xva, va.label.astype(str).values)
                res['entries'][k] = dict(accuracy=round(acc, 4), feature_dim=int(X.shape[1]), seconds=round(time.time() - t0, 1),
                                         lm=p, random_init=rnd)
                print(f'[{k}] probe accuracy {acc:.3f}', flush=True)
            atomic_write_json(path, res)
    rows = ['| language | LM weights | probe, 1000 labels | probe, 100 labels |', '|---|---|---|---|']
    for k, v in res['entries'].items():
        lang, name, n = k.split('|')
        if n != '1000': continue
        v100 = res['entries'].get(f'{lang}|{name}|100', {}).get('accuracy', '')
        rows.append(f'| {lang} | {name} | {v["accuracy"]:.3f} | {v100 if v100 == "" else f"{v100:.3f}"} |')
    atomic_write_text(a.out.with_suffix('.md'), f'Linear probe (StandardScaler + LogisticRegression C=0.1) on frozen concat-pooled '
                      f'last-layer LM features, accuracy on ddtp valid.csv. {res["machine"]}, {res["updated"]}.\n\n' + '\n'.join(rows) + '\n')

if __name__ == '__main__': main()
