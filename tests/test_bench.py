"""The evaluation scripts under bench/ run end to end in their tiny `--quick` form (a tiny version of each path of the
harness; the full runs take hours and are not tests)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from multifit_fastai.package import load_package

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'bench'))
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def bench(script, *args):
    r = subprocess.run([sys.executable, str(REPO/'bench'/script), *map(str, args)], capture_output=True, text=True,
                       env=ENV, timeout=1200, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r

@pytest.fixture(scope='module')
def ddtp_quick(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp('ddtp')
    args = ['--quick', '--langs', 'de', '--word-langs', 'de', '--base-100', 'steps', '--data', shared_data, '--work', d/'work', '--out', d]
    bench('ddtp.py', *args)
    return d, args

SETTINGS = ('pretrained', 'in_domain_lm', 'pretrained_task', 'no_pretraining')

@pytest.mark.slow
def test_ddtp_quick_every_setting(ddtp_quick):
    d, args = ddtp_quick
    runs = json.loads((d/'ddtp_quick.json').read_text())['runs']
    want = {f'de/subword/{m}/{n}/s{s}' for m in SETTINGS for n in (1000, 100) for s in (0, 1)}
    want |= {f'de/subword/tfidf_lr/{n}' for n in (1000, 100)} | {f'de/word/pretrained/1000/s{s}' for s in (0, 1)}
    assert want <= set(runs)
    assert all(0 <= runs[k]['accuracy'] <= 1 for k in want)
    assert runs['de/subword/tfidf_lr/1000']['accuracy'] > 0.3  # 8 classes, majority class 0.17 of valid
    assert runs['de/subword/pretrained/1000/s0']['seconds_pretrain'] > 0
    assert runs['de/subword/in_domain_lm/1000/s0']['seconds_pretrain'] is None  # "no wiki": no corpus pretraining
    assert {runs[f'de/subword/no_pretraining/1000/s{s}']['seed'] for s in (0, 1)} == {0, 1}
    md = (d/'ddtp_quick.md').read_text()
    for row in ('| TF-IDF + LR | 1000 |', 'word-level tokens | 1000 |', '| LM pretraining (corpus) |', '| in-domain LM fine-tuning | 100 |',
                '"no wiki"'):
        assert row in md, row
    assert ' ± ' in md  # mean ± sd over seeds
    assert (d/'ddtp_quick.png').stat().st_size > 1000  # the plot
    # --base-100 steps: 100 labels train for at least M steps, after M/2 frozen-encoder steps from an LM
    assert runs['de/subword/pretrained/100/s0']['min_steps'] == 8 and runs['de/subword/pretrained/100/s0']['head_steps'] == 4
    assert runs['de/subword/no_pretraining/100/s0']['min_steps'] == 8 and 'head_steps' not in runs['de/subword/no_pretraining/100/s0']
    assert 'min_steps' not in runs['de/subword/pretrained/1000/s0']

def test_topic_agreement():
    import numpy as np, torch
    from probe import topic_agreement
    cls = np.repeat(np.arange(8), 30)
    centres = torch.randn(8, 64) * 5
    topical = centres[torch.as_tensor(cls)] + torch.randn(240, 64)  # every piece near its class's centre
    assert topical.shape == (240, 64)
    assert topic_agreement(topical, np.arange(240), cls) == 1.0
    rnd = torch.randn(240, 64, generator=torch.Generator().manual_seed(0))
    assert 0.05 < topic_agreement(rnd, np.arange(240), cls) < 0.25  # about 1/8 without any topic structure
    assert topic_agreement(torch.cat([torch.zeros(10, 64), topical]), np.arange(10, 250), cls) == 1.0  # only the listed rows count

def test_ddtp_cells_mean_and_sd():
    from ddtp import cell, fmt
    runs = {'de/subword/x/100/s0': {'accuracy': 0.5}, 'de/subword/x/100/s1': {'accuracy': 0.7}, 'de/subword/t/100': {'accuracy': 0.6}}
    assert sorted(cell(runs, 'de/subword/x/100')) == [0.5, 0.7] and cell(runs, 'de/subword/t/100') == [0.6]
    assert fmt([0.5, 0.7]) == '0.600 ± 0.141' and fmt([0.6]) == '0.600' and fmt([]) == ''

def test_corpus_summary_takes_longest_complete_schedule(tmp_path, monkeypatch):
    import corpus_summary as cs
    def run(epochs, acc0, acck, done=True):
        runs = {f'xx/c0/lm': {}, **{f'xx/c0/{n}/s{s}': {'accuracy': acc0 + s / 100} for n in (100, 1000) for s in range(3)},
                **{f'xx/tfidf/{n}': {'accuracy': 0.6} for n in (100, 1000)}}
        if done: runs |= {f'xx/c{epochs}/lm': {}, **{f'xx/c{epochs}/{n}/s{s}': {'accuracy': acck} for n in (100, 1000) for s in range(3)}}
        return dict(meta=dict(epochs=epochs, pretrain=dict(tokens_per_epoch=1000)), runs=runs)
    for name, d in (('corpus_budget_xx.json', run(3, 0.2, 0.3)), ('corpus_budget_xx_e6/corpus_budget_xx.json', run(6, 0.25, 0.4)),
                    ('corpus_budget_xx_e12/corpus_budget_xx.json', run(12, 0.1, 0.9, done=False))):
        (tmp_path/name).parent.mkdir(exist_ok=True); (tmp_path/name).write_text(json.dumps(d))
    monkeypatch.setattr(cs, 'RES', tmp_path)
    assert [d['meta']['epochs'] for d in cs.corpus_files('xx')] == [3, 6, 12]
    r = cs.corpus_rows('xx')  # the 12-epoch run is unfinished: the 6-epoch schedule, with its own no-corpus rows
    assert (r['epochs'], r['tokens']) == (6, 6000)
    assert r[100]['pre'] == [0.4] * 3 and sorted(r[100]['none']) == [0.25, 0.26, 0.27] and r[1000]['tfidf'] == 0.6
    assert cs.corpus_rows('yy') is None

def test_recipe_lever_kwargs():
    from recipe_levers import lever_kwargs, LEVERS
    assert lever_kwargs('base', 200, 0.01) == dict(min_steps=200, head_steps=100, lr=0.01, lr_low=None)  # H defaults to M/2
    assert lever_kwargs('base', 336, 0.01, 56)['head_steps'] == 56
    assert lever_kwargs('long', 336, 0.01, 56) == dict(min_steps=672, head_steps=56, lr=0.01, lr_low=None)
    assert lever_kwargs('low_lr', 336, 0.03, 56) == dict(min_steps=336, head_steps=56, lr=0.01, lr_low=None)
    assert lever_kwargs('slice', 336, 0.01, 56)['lr_low'] == 0.01 / 2.6**4
    assert all(lever_kwargs(l, 8, 0.01) for l in LEVERS)

def test_finetune_budget_settings_and_split():
    import argparse
    from finetune_budget import parse_setting, split_docs
    assert parse_setting('6:4000') == (6, 4000) and parse_setting('2:all') == (2, 0)
    for bad in ('6', '6:x', '0:100', '2:0', ':all'):
        with pytest.raises(argparse.ArgumentTypeError, match='expected E:D'): parse_setting(bad)
    docs = [f'd{i}' for i in range(10)]
    assert split_docs(docs, 4, 3) == (['d0', 'd1', 'd2', 'd3'], ['d7', 'd8', 'd9'])
    assert split_docs(docs, 0, 3) == (docs[:7], docs[7:])  # 'all': every document but the held-out ones

@pytest.mark.slow
def test_ddtp_word_level_tokenizer_keeps_whole_words(ddtp_quick):
    d, _ = ddtp_quick
    tok = load_package(d/'ddtp_quick'/'de-word'/'lm_finetuned').tokenizer
    assert tok.meta['model_type'] == 'word'
    pieces = [tok.sp.id_to_piece(int(i)) for i in tok.encode_text('Das Programm ist ein Spiel .')]
    assert '▁programm' in pieces and '▁spiel' in pieces  # words, not sub-word pieces
    sub = load_package(d/'ddtp_quick'/'de-subword'/'lm_finetuned').tokenizer
    assert sub.meta.get('model_type', 'unigram') != 'word'

@pytest.mark.slow
def test_ddtp_resumes_without_retraining(ddtp_quick):
    d, args = ddtp_quick
    before = json.loads((d/'ddtp_quick.json').read_text())['runs']
    r = bench('ddtp.py', *args)
    assert 'finetune_lm: using' in r.stdout and ' steps) in ' not in r.stdout and ' epochs in ' not in r.stdout  # nothing trained
    assert json.loads((d/'ddtp_quick.json').read_text())['runs'] == before

def test_word_segmenters():
    from ddtp import word_segmenter
    assert word_segmenter('de')('Ein Spiel, das läuft.') == 'Ein Spiel , das läuft .'
    ja = word_segmenter('ja')('画像を編集するプログラムです。').split()
    assert len(ja) >= 4 and ''.join(ja) == '画像を編集するプログラムです。'
    zh = word_segmenter('zh')('这是一个图像编辑程序。').split()
    assert len(zh) >= 3 and ''.join(zh) == '这是一个图像编辑程序。'

@pytest.mark.slow
def test_probe_scores_random_and_trained_encoders(ddtp_quick, shared_data):
    d, _ = ddtp_quick
    lm = d/'ddtp_quick'/'{lang}-subword'/'lm_finetuned'
    bench('probe.py', '--data', shared_data, '--langs', 'de', '--lm', lm, '--out', d/'probe')
    e = json.loads((d/'probe.json').read_text())['entries']
    assert set(e) == {f'de|{m}|{n}' for m in ('random init', 'de-subword/lm_finetuned') for n in (1000, 100)}
    assert all(0 <= v['accuracy'] <= 1 for v in e.values())
    assert e['de|random init|1000']['random_init'] and not e['de|de-subword/lm_finetuned|1000']['random_init']
    assert e['de|random init|1000']['feature_dim'] == 3 * 64  # last, max and mean of the tiny LM's 64-unit last layer
    assert 'probe, 1000 labels' in (d/'probe.md').read_text()

@pytest.mark.slow
def test_predict_bench_quick(shared_data, tmp_path):
    bench('predict.py', '--quick', '--data', shared_data, '--work', tmp_path/'predict', '--out', tmp_path)
    R = json.loads((tmp_path/'predict.json').read_text())
    assert [r['n'] for r in R['runs'] if r['precision'] == 'fp32'] == [1, 8, 40]
    assert all(r['ours']['docs_per_s'] > 0 < r['fastai']['docs_per_s'] for r in R['runs'])
    alone = next(iter(R['alone'].values()))
    assert alone['ours_argmax_vs_alone'] == 1.0 and alone['ours_max_abs_diff_vs_alone'] < 1e-5
    bf16 = [r for r in R['runs'] if r['precision'] == 'bf16']  # where the CPU has native bf16, else skipped with the reason
    assert ('bf16' in R['skipped']) != bool(bf16)
    assert not bf16 or [r['n'] for r in bf16] == [1, 8, 40]
    assert all(0 <= r['ours_vs_fp32'] <= 1 for r in bf16)
    assert '| ours docs/s |' in (tmp_path/'predict.md').read_text()

@pytest.mark.slow
def test_predict_profile_quick(shared_data, tmp_path):
    bench('predict_profile.py', '--quick', '--data', shared_data, '--work', tmp_path/'predict', '--out', tmp_path)
    R = json.loads((tmp_path/'predict_profile.json').read_text())
    f = R['flops_per_token']
    assert f['fastai'] == sum(f['layers']) > f['ours'] == sum(f['layers'][1:]) > 0  # ours: the first layer is a look-up
    assert all(r['wall_s'] > 0 and r['ops'] for r in R['routes'].values())
    assert '| operator | self CPU s | share | calls |' in (tmp_path/'predict_profile.md').read_text()

def test_zero_shot_quick_pool_threshold_pretraining(shared_data, tmp_path):
    "The zero-shot harness' grid: the unlabelled pool, the automatic threshold, pretrained vs scratch students, 2 seeds"
    bench('zero_shot.py', '--quick', '--teacher', 'tfidf', '--targets', 'pool', '--thresholds', 'auto', '--pretraining',
          'pretrained', 'scratch', '--seeds', '0', '1', '--data', shared_data, '--work', tmp_path/'work', '--out', tmp_path/'zs')
    d = json.loads((tmp_path/'zs.json').read_text())
    runs = d['entries']
    assert set(runs) == {f'de/pool/hard/auto/{p}/s{s}' for p in ('pretrained', 'scratch') for s in (0, 1)}
    for r in runs.values():
        assert 0 <= r['student_acc'] <= 1 and 0 < r['n_pseudo'] <= r['n_target'] == 80
        assert r['calibration']['n_holdout'] == 80 and r['min_confidence'] == r['calibration']['threshold']
    md = (tmp_path/'zs.md').read_text()
    assert '| de | pool | hard | auto | scratch | 2 |' in md and ' ± ' in md

def test_qrnn_tile_bench_quick(tmp_path):
    bench('qrnn_tile.py', '--quick', '--out', tmp_path)
    r = json.loads((tmp_path/'qrnn_tile.json').read_text())
    assert len(r['rows']) == 8 and r['default_tile'] in r['tiles']  # 6 training and 2 prediction product shapes
    assert all(v > 0 for row in r['rows'] for v in row['gflops'].values())
    assert '| 1 | fwd+bwd | 560 x 193 -> 581 |' in (tmp_path/'qrnn_tile.md').read_text()  # the LM step's shapes, 8x smaller

def test_lm_step_alloc_bench_quick(tmp_path):
    bench('lm_step_alloc.py', '--quick', '--bs', '4', '--out', tmp_path)
    r = json.loads((tmp_path/'lm_step_alloc.json').read_text())
    assert set(r['rows']) == {f'{m}/{k}' for m in ('AWD_QRNN', 'AWD_LSTM') for k in ('default', 'kept')}
    assert all(v['cpu_s'] > 0 and v['faults'] >= 0 for v in r['rows'].values())
    assert 'LSTM/QRNN:' in (tmp_path/'lm_step_alloc.md').read_text()

@pytest.mark.slow
def test_in_domain_budget_quick(shared_data, tmp_path):
    "The budget curve's tiny form: the baseline and one LM budget, each with its seeds at 1000 and 100 labels, probe and plot"
    bench('in_domain_budget.py', '--quick', '--data', shared_data, '--work', tmp_path/'work', '--out', tmp_path)
    runs = json.loads((tmp_path/'in_domain_budget_quick.json').read_text())['runs']
    for e in (0, 1):
        for n in (1000, 100): assert {f'de/e{e}/{n}/s0', f'de/e{e}/{n}/s1'} <= set(runs)
    lm = runs['de/e1/lm']
    assert lm['steps'] > 0 and lm['valid_perplexity'] > 1 and 0 <= lm['probe_1000'] <= 1
    assert 0 <= lm['emb_topic'] <= 1 and 0 <= lm['emb_topic_random'] <= 1  # the embedding's topic agreement, and random's
    assert runs['de/e1/100/s0']['min_steps'] == 8 and runs['de/e1/100/s0']['head_steps'] == 4
    assert (tmp_path/'in_domain_budget_quick.png').stat().st_size > 1000
    md = (tmp_path/'in_domain_budget_quick.md').read_text()
    assert '| 1 |' in md and 'TF-IDF + LR' in md and '(random ' in md
    # the recipe levers from that LM
    bench('recipe_levers.py', '--lm-exp', tmp_path/'in_domain_budget_quick'/'de'/'e1', '--steps', '8', '--seeds', '0',
          '--levers', 'base', 'frozen', '--data', shared_data, '--out', tmp_path)
    lev = json.loads((tmp_path/'recipe_levers_de.json').read_text())['runs']
    assert set(lev) == {'base/s0', 'frozen/s0'} and lev['base/s0']['steps'] >= 8 and 0 <= lev['frozen/s0']['accuracy'] <= 1
    assert '| frozen |' in (tmp_path/'recipe_levers_de.md').read_text()

@pytest.mark.slow
def test_corpus_budget_quick(shared_data, tmp_path):
    "The corpus-budget curve's tiny form: a streamed pretraining run with an LM package per epoch, budget 1 evaluated by a second process that waits for its snapshot, budget 0 by a third; seeds, probe, plot; a re-run trains nothing"
    args = ('--quick', '--data', shared_data, '--work', tmp_path/'work', '--out', tmp_path)
    ev = subprocess.Popen([sys.executable, str(REPO/'bench'/'corpus_budget.py'), *map(str, args), '--stage', 'eval', '--budgets', '1'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=REPO)
    bench('corpus_budget.py', *args, '--stage', 'pretrain')
    out, _ = ev.communicate(timeout=1200)
    assert ev.returncode == 0 and 'waiting for' in out, out[-3000:]
    d = json.loads((tmp_path/'corpus_budget_quick.json').read_text())
    assert 'de/c1/lm' in d['runs'] and d['meta']['pretrain']['tokens_per_epoch'] > 0  # the staged run keeps the pretraining's figures
    bench('corpus_budget.py', *args)  # budget 0 here; budget 1's entries are kept
    d = json.loads((tmp_path/'corpus_budget_quick.json').read_text())
    runs = d['runs']
    for k in (0, 1):
        for n in (1000, 100): assert {f'de/c{k}/{n}/s0', f'de/c{k}/{n}/s1'} <= set(runs)
        assert 0 <= runs[f'de/c{k}/lm']['probe_1000'] <= 1 and 0 <= runs[f'de/c{k}/lm']['emb_topic'] <= 1
    assert d['meta']['pretrain']['tokens_per_epoch'] > 0
    assert (tmp_path/'corpus_budget_quick'/'de'/'snapshots'/'epoch1'/'config.json').is_file()
    assert (tmp_path/'corpus_budget_quick.png').stat().st_size > 1000
    md = (tmp_path/'corpus_budget_quick.md').read_text()
    assert '| 0 | 0.00M |' in md and '| 1 | 0.00M |' not in md
    r = bench('corpus_budget.py', *args)
    assert ' steps) in ' not in r.stdout and ' epochs in ' not in r.stdout  # resumed from the results: nothing trained
    # the in-domain fine-tuning budget from budget 1's corpus LM: two settings, the corpus-budget row beside them
    ft = ('--quick', '--data', shared_data, '--work', tmp_path/'work', '--out', tmp_path, '--lm-exp', tmp_path/'corpus_budget_quick'/'de'/'c1',
          '--settings', '1:100', '1:all', '--baseline', tmp_path/'corpus_budget_quick.json')
    bench('finetune_budget.py', *ft)
    runs = json.loads((tmp_path/'finetune_budget_quick.json').read_text())['runs']
    assert runs['de/ft1_100/lm']['docs'] == 100 and runs['de/ft1_all/lm']['docs'] == 360  # 400 documents, the last 40 held out
    for s in ('ft1_100', 'ft1_all'):
        for n in (1000, 100): assert {f'de/{s}/{n}/s0', f'de/{s}/{n}/s1'} <= set(runs)
    md = (tmp_path/'finetune_budget_quick.md').read_text()
    assert '(bench/corpus_budget.py)' in md and '| 1 | 360 |' in md

@pytest.mark.slow
def test_cpu_bf16_speed_rows(tmp_path):
    "The bf16 benchmark's speed part at the demo size: a row per precision and decoder mode, ratios taken in one process"
    bench('cpu_bf16.py', '--sizes', 'demo', '--threads', '1', '--steps', '1', '--warmup', '1', '--skip-quality', '--out', tmp_path)
    row = json.loads((tmp_path/'cpu_bf16.json').read_text())['speed']['demo, 1 thread(s)']
    assert {'fp32_s', 'bf16_s', 'bf16_fp32_decoder_s', 'bf16_speedup', 'bf16_fp32_decoder_speedup'} <= set(row)
    assert all(row[k] > 0 for k in row)
    assert 'bf16_fp32_decoder speed-up' in (tmp_path/'cpu_bf16.md').read_text()
