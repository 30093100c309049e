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
from fastai.text.all import get_language_model, masked_concat_pool
from multifit_fastai.presets import ARCHS
from multifit_fastai.package import load_package
from multifit_fastai.core import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent

@torch.no_grad()
def features(encoder, tok, texts, bs=32) -> np.ndarray:
    "Concat-pooled (last, max, mean) last-layer outputs of `encoder` for every text, pooled by fastai's `masked_concat_pool`"
    ids = tok.encode_batch(list(texts))
    order = np.argsort([-len(o) for o in ids], kind='stable')
    out = None
    for i in range(0, len(ids), bs):
        idx = order[i:i + bs]
        lens = torch.tensor([len(ids[j]) for j in idx])
        mask = torch.arange(int(lens.max()))[None] >= lens[:, None]  # right padding; the QRNN is causal, so pads change nothing before them
        x = torch.zeros(mask.shape, dtype=torch.long)
        for r, j in enumerate(idx): x[r, :lens[r]] = torch.as_tensor(ids[j])
        encoder.reset()
        f = masked_concat_pool(encoder(x), mask, mask.shape[1]).numpy()
        if out is None: out = np.empty((len(ids), f.shape[1]), dtype=np.float32)
        out[idx] = f
    return out

def encoder_of(pkg, random_init=False, seed=0):
    c = pkg.config
    if random_init:
        torch.manual_seed(seed)
        m = get_language_model(ARCHS[c['arch']], c['vocab_sz'], config=dict(c['model_config']), drop_mult=c.get('drop_mult', 1.))
    else: m = pkg.model()
    return m[0].eval()

def probe(Xtr, ytr, Xva, yva, C=0.1) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    clf.fit(Xtr, ytr)
    return float((clf.predict(Xva) == yva).mean())

def ddtp_splits(data, lang):
    "train.csv (1000 labels), train_100.csv and valid.csv of one DDTP language"
    return tuple(pd.read_csv(Path(data)/'ddtp'/lang/f'{s}.csv') for s in ('train', 'train_100', 'valid'))

def probe_encoder(encoder, tok, tr, t100, va) -> dict:
    "Probe accuracy on `va` of `encoder`'s frozen features with the labels of `tr` (1000) and of `t100` (100)"
    Xtr, X100, Xva = (features(encoder, tok, df.text) for df in (tr, t100, va))
    yva = va.label.astype(str).values
    return {n: probe(X, df.label.astype(str).values, Xva, yva) for n, X, df in ((1000, Xtr, tr), (100, X100, t100))} | {'dim': Xtr.shape[1]}

def class_pieces(tok, df, per_class: int = 30, min_docs: int = 5) -> tuple:
    "Ids of the `per_class` pieces most tied to each label of `df` (share of their documents in it, x log document count), and their labels"
    ids, labels = tok.encode_batch(list(df.text)), sorted(set(df.label.astype(str)))
    counts = np.zeros((len(labels), len(tok)))
    for d, l in zip(ids, df.label.astype(str)): counts[labels.index(l), np.unique(np.asarray(d))] += 1
    tot = counts.sum(0); cand = np.where(tot >= min_docs)[0]
    score = counts[:, cand] / tot[cand] * np.log(tot[cand])
    pieces = [(int(cand[j]), c) for c in range(len(labels)) for j in np.argsort(-score[c])[:per_class]]
    return np.array([i for i, _ in pieces]), np.array([c for _, c in pieces])

def topic_agreement(emb: torch.Tensor, pieces, cls, k: int = 5) -> float:
    """Share of each class piece's `k` nearest pieces (cosine, centred embeddings) that belong to the same class: ~1/n_classes
    for embeddings that know nothing of topics, 1.0 when every neighbourhood is one topic"""
    w = torch.nn.functional.normalize(emb.float() - emb.float().mean(0), dim=1)[torch.as_tensor(pieces)]
    sim = w @ w.T; sim.fill_diagonal_(-2.)
    nn_idx = sim.topk(k, dim=1).indices.numpy()
    return float((cls[nn_idx] == cls[:, None]).mean())

def embedding_topic_agreement(pkg, df, seed: int = 0) -> dict:
    "`topic_agreement` of `pkg`'s input embeddings and of random ones of the same shape, with the class pieces of labelled `df`"
    pieces, cls = class_pieces(pkg.tokenizer, df)
    emb = pkg.state['0.encoder.weight' if pkg.kind == 'lm' else '0.module.encoder.weight']
    rnd = torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed))
    return dict(trained=round(topic_agreement(emb, pieces, cls), 4), random=round(topic_agreement(rnd, pieces, cls), 4), pieces=len(pieces))

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
        tr, t100, va = ddtp_splits(a.data, lang)
        models = [(p.format(lang=lang), False) for p in a.lm]
        if a.random: models.insert(0, (models[0][0], True))
        for p, rnd in models:
            name = 'random init' if rnd else Path(p).parent.name + '/' + Path(p).name
            keys = {n: f'{lang}|{name}|{n}' for n in (1000, 100)}
            if all(k in res['entries'] for k in keys.values()): continue
            t0 = time.time()
            pkg = load_package(p)
            accs = probe_encoder(encoder_of(pkg, rnd), pkg.tokenizer, tr, t100, va)
            for n, k in keys.items():
                res['entries'][k] = dict(accuracy=round(accs[n], 4), feature_dim=int(accs['dim']), seconds=round(time.time() - t0, 1),
                                         lm=p, random_init=rnd)
                print(f'[{k}] probe accuracy {accs[n]:.3f}', flush=True)
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
