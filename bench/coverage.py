"""Benchmark (not a test): SentencePiece `character_coverage` for alphabetic languages, 1.0 (ours) vs 0.9998 (the
released MultiFiT configuration), measured by what the language model makes of each tokenization.

For each language: one seeded sample of corpus paragraphs (`corpora/<lang>.txt.gz`, reservoir sampling over the whole
file), split into LM training paragraphs and held-out paragraphs. For each coverage: a 15k-piece tokenizer trained on
the training paragraphs, then a demo-size QRNN LM (emb 256, hidden 640, 3 layers, vocab 15k) pretrained on them with
the same seed and budget. Both LMs are scored on the held-out paragraphs and on DDTP `valid.csv` (in-domain text the
LM never saw). Per-token perplexities of two tokenizations are not comparable (different ids per text, and an
unknown id is one easy prediction standing for any character), so the table also gives the loss per character:
the summed cross-entropy over the predicted ids divided by the characters of the raw texts, in bits.

Run:   OMP_NUM_THREADS=2 .venv/bin/python bench/coverage.py [--langs de ru] [--paragraphs 20000] [--epochs 1]
Writes bench/results/coverage.{json,md}; the experiments stay in bench/work/coverage/ (rerunning reuses them).
"""
import argparse, json, math, os, statistics, time
from datetime import date
from pathlib import Path
import pandas as pd, torch
from fastai.torch_core import set_seed
from machine import cpu_model
from multifit_fastai.core import atomic_write_json, atomic_write_text, read_lines
from multifit_fastai.pipeline import MultiFiT, sample_lines
from multifit_fastai.learner import text_dataloaders, multifit_lm_learner
from multifit_fastai.tokenizer import UNK_ID

HERE = Path(__file__).resolve().parent

def score(exp: MultiFiT, texts: list, bs: int = 32) -> dict:
    "Loss of the experiment's pretrained LM on `texts` (one LM stream, as in training): per id and per character"
    tok = exp.tokenizer()
    df = pd.DataFrame({'text': texts})
    dls = text_dataloaders(tok, df, df, bs=bs, seq_len=70)
    learn = multifit_lm_learner(dls, preset=exp.preset('pretrain'), pretrained=exp.stage_path('pretrain'))
    loss, acc, ppl = map(float, learn.validate(dl=dls.valid))
    ids = tok.encode_batch(texts)
    n_ids = int(ids.lens.sum())
    n_unk = int(sum(int((torch.as_tensor(i) == UNK_ID).sum()) for i in ids))
    n_chars = sum(len(t) for t in texts)
    return dict(loss_per_id=round(loss, 4), perplexity=round(ppl, 2), accuracy=round(acc, 4), ids=n_ids,
                ids_per_char=round(n_ids / n_chars, 4), unknown_pct=round(100 * n_unk / n_ids, 4),
                bits_per_char=round(loss * n_ids / n_chars / math.log(2), 4))

def run_lang(a, lang: str, res: dict):
    paras = [p for p in sample_lines(read_lines(a.data/'corpora'/f'{lang}.txt.gz'), a.paragraphs + a.held_out, seed=0) if p.strip()]
    every = len(paras) // a.held_out  # every k-th paragraph of the sample is held out, the rest trains the tokenizer and LM
    held = [p for i, p in enumerate(paras) if i % every == 0][:a.held_out]
    train = [p for i, p in enumerate(paras) if i % every or i // every >= a.held_out]
    ddtp = list(pd.read_csv(a.data/'ddtp'/lang/'valid.csv', keep_default_na=False).text)
    for cov in a.coverages:
      for seed in a.seeds:
        key = f'{lang} coverage={cov}' + (f' seed={seed}' if seed else '')
        if key in res['runs']: continue
        set_seed(seed)
        exp = MultiFiT(a.work/(f'{lang}-cov{cov}' + (f'-seed{seed}' if seed else '')), lang=lang, size='demo', vocab_sz=15000,
                       tok_kwargs=dict(character_coverage=cov), verbose=True)
        t0 = time.time()
        exp.pretrain_lm(train, valid=held, epochs=a.epochs, seed=seed)
        tok = exp.tokenizer()
        single = sum(1 for i in range(len(tok)) if len(tok.sp.id_to_piece(i).lstrip('▁')) == 1)
        res['runs'][key] = dict(lang=lang, coverage=cov, seed=seed, seconds=round(time.time() - t0, 1),
                                single_char_pieces=single, train_paragraphs=len(train),
                                corpus_held_out=score(exp, held), ddtp_valid=score(exp, ddtp))
        print(key, res['runs'][key], flush=True)
        atomic_write_json(a.out.with_suffix('.json'), res)

def _mean_sd(v): return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.

def markdown(res: dict) -> str:
    s = res['settings']
    L = [f'# character_coverage, 1.0 vs 0.9998: what the LM makes of it', '',
         f'**Machine:** {res["machine"]}; {res["date"]}. **Setting:** {s["paragraphs"]} corpus paragraphs (seeded reservoir '
         f'sample), {s["held_out"]} more held out; 15k-piece unigram tokenizer per coverage; demo-size QRNN LM (emb 256, '
         f'hidden 640, 3 layers), {s["epochs"]} epoch(s), the same budget and LM seeds for both coverages. bits/char: summed '
         'cross-entropy over the predicted ids / characters of the raw texts.', '',
         '| language | coverage | LM seed | unknown ids (DDTP valid) | single-character pieces | held-out corpus: ppl per id | '
         'bits/char | DDTP valid: ppl per id | bits/char | LM seconds |', '|---|---|---|---|---|---|---|---|---|---|']
    groups = {}
    for r in res['runs'].values():
        c, d = r['corpus_held_out'], r['ddtp_valid']
        L.append(f'| {r["lang"]} | {r["coverage"]} | {r.get("seed", 0)} | {d["unknown_pct"]:.3f} % | {r["single_char_pieces"]} | '
                 f'{c["perplexity"]:.1f} | {c["bits_per_char"]:.4f} | {d["perplexity"]:.1f} | {d["bits_per_char"]:.4f} | {r["seconds"]:.0f} |')
        groups.setdefault((r['lang'], r['coverage']), []).append(r)
    L += ['', '| language | coverage | seeds | held-out corpus bits/char (mean ± sd) | DDTP valid bits/char (mean ± sd) |',
          '|---|---|---|---|---|']
    for (lang, cov), rs in groups.items():
        (a, sa), (b, sb) = (_mean_sd([r[k]['bits_per_char'] for r in rs]) for k in ('corpus_held_out', 'ddtp_valid'))
        L.append(f'| {lang} | {cov} | {len(rs)} | {a:.4f} ± {sa:.4f} | {b:.4f} ± {sb:.4f} |')
    return '\n'.join(L) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', type=Path, default=Path(os.environ.get('MULTIFIT_SHARED_DATA', HERE.parents[1]/'shared'/'data')))
    ap.add_argument('--langs', nargs='+', default=['de', 'ru'])
    ap.add_argument('--coverages', nargs='+', type=float, default=[1.0, 0.9998])
    ap.add_argument('--paragraphs', type=int, default=20000); ap.add_argument('--held-out', type=int, default=1000)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1], help='LM seeds (the tokenizer is the same for each)')
    ap.add_argument('--work', type=Path, default=HERE/'work'/'coverage')
    ap.add_argument('--out', type=Path, default=HERE/'results'/'coverage')
    a = ap.parse_args()
    f = a.out.with_suffix('.json')
    res = json.loads(f.read_text()) if f.is_file() else dict(runs={})
    res.update(machine=f'{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}',
               date=str(date.today()), settings=dict(paragraphs=a.paragraphs, held_out=a.held_out, epochs=a.epochs))
    for lang in a.langs: run_lang(a, lang, res)
    atomic_write_json(f, res); atomic_write_text(a.out.with_suffix('.md'), markdown(res))
    print(markdown(res))

if __name__ == '__main__': main()
