"""Diagnostic (not a test): topic information in every layer of a QRNN LM, against the same architecture with random weights.

bench/probe.py probes the last layer only (the classifier head's input). Here every text of ddtp train.csv (1000
labels) and valid.csv is run alone (no padding) through the encoder in eval mode, and the mean and max over its
tokens of the embedding layer's output and of each QRNN layer's output are the features of a linear probe
(bench/probe.py's StandardScaler + logistic regression), per layer and with all layers concatenated; beside them,
without any LM, TF-IDF of the same SentencePiece pieces with logistic regression.

Run:   .venv/bin/python bench/probe_layers.py --lm bench/work/in_domain_budget/de/e2/lm_finetuned
Writes bench/results/probe_layers.{json,md}.
"""
import argparse, os
from datetime import date
from pathlib import Path
import numpy as np, torch
from probe import ddtp_splits, probe, encoder_of
from machine import cpu_model, write_results
from multifit_fastai.package import load_package

HERE = Path(__file__).resolve().parent

@torch.no_grad()
def layer_features(enc, tok, texts) -> dict:
    "{'emb', 'l0', ...: (n_texts, 2 x dim) mean and max over each text's tokens}"
    outs = {}
    for ids in tok.encode_batch(list(texts)):
        enc.reset()
        h = enc.encoder(torch.as_tensor(ids)[None]); res = {'emb': h}
        for l, rnn in enumerate(enc.rnns):
            h, _ = rnn(h); res[f'l{l}'] = h
        for k, v in res.items(): outs.setdefault(k, []).append(torch.cat([v[0].mean(0), v[0].max(0).values]).float().numpy())
    return {k: np.stack(v) for k, v in outs.items()}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=HERE.parents[1]/'shared'/'data')
    ap.add_argument('--lang', default='de'); ap.add_argument('--lm', required=True, help='an LM package directory')
    ap.add_argument('--out', type=Path, default=HERE/'results')
    a = ap.parse_args()
    torch.set_num_threads(1)
    pkg = load_package(a.lm); tr, _, va = ddtp_splits(a.data, a.lang)
    ytr, yva = tr.label.astype(str).values, va.label.astype(str).values
    R = dict(lm=str(a.lm), lang=a.lang, date=str(date.today()), machine=f'{cpu_model()}, {os.cpu_count()} cores, 1 torch thread', probe={})
    for name, rnd in (('trained', False), ('random init', True)):
        Ftr, Fva = (layer_features(encoder_of(pkg, rnd), pkg.tokenizer, df.text) for df in (tr, va))
        Ftr['all layers'], Fva['all layers'] = np.concatenate(list(Ftr.values()), 1), np.concatenate(list(Fva.values()), 1)
        R['probe'][name] = {k: dict(dim=int(Ftr[k].shape[1]), accuracy=round(probe(Ftr[k], ytr, Fva[k], yva), 4)) for k in Ftr}
        print(name, R['probe'][name], flush=True)
    # the same tokens without any LM: TF-IDF of the SentencePiece pieces + the harness's TF-IDF classifier (C=10), and the probe's own classifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    pieces = lambda df: [' '.join(map(str, ids.tolist())) for ids in pkg.tokenizer.encode_batch(list(df.text))]
    vec = TfidfVectorizer(token_pattern=r'\S+', sublinear_tf=True); Xtr = vec.fit_transform(pieces(tr)); Xva = vec.transform(pieces(va))
    R['pieces_tfidf'] = {f'C={C}': round(float((LogisticRegression(C=C, max_iter=3000).fit(Xtr, ytr).predict(Xva) == yva).mean()), 4) for C in (0.1, 10.)}
    print('pieces', R['pieces_tfidf'], flush=True)
    layers = list(R['probe']['trained'])
    md = '\n'.join([f"Linear probe per layer (mean + max over tokens; StandardScaler + LogisticRegression C=0.1), {a.lang} train.csv "
                    f"(1000 labels) -> valid.csv. LM `{a.lm}`; random init: the same architecture with random weights. "
                    f"{R['machine']}, {R['date']}.", '', '| features | dim | trained LM | random init |', '|---|---|---|---|']
                   + [f"| {k} | {R['probe']['trained'][k]['dim']} | {R['probe']['trained'][k]['accuracy']:.3f} | "
                      f"{R['probe']['random init'][k]['accuracy']:.3f} |" for k in layers]
                   + ['', f"No LM: TF-IDF of the same SentencePiece pieces + logistic regression: {R['pieces_tfidf']}."]) + '\n'
    write_results(a.out, 'probe_layers', R, md)
    print(md)

if __name__ == '__main__': main()
