"""The evaluation scripts under bench/ run end to end in their tiny `--quick` form (issue 5: the test suite runs a tiny
version of each path of the harness; the full runs take hours and are not tests)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from multifit_fastai.learner import load_package

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
    args = ['--quick', '--langs', 'de', '--word-langs', 'de', '--data', shared_data, '--work', d/'work', '--out', d]
    bench('ddtp.py', *args)
    return d, args

@pytest.mark.slow
def test_ddtp_quick_every_setting(ddtp_quick):
    d, args = ddtp_quick
    runs = json.loads((d/'ddtp_quick.json').read_text())['runs']
    want = {f'de/subword/{m}/{n}' for m in ('multifit_pretrained', 'multifit_no_pretraining', 'tfidf_lr') for n in (1000, 100)}
    want.add('de/word/multifit_pretrained/1000')
    assert want <= set(runs)
    assert all(0 <= runs[k]['accuracy'] <= 1 for k in want)
    assert runs['de/subword/tfidf_lr/1000']['accuracy'] > 0.3  # 8 classes, majority class 0.17 of valid
    assert runs['de/subword/multifit_pretrained/1000']['seconds_pretrain'] > 0
    md = (d/'ddtp_quick.md').read_text()
    assert '| TF-IDF + LR, 1000 labels |' in md and 'word-level tokens, 1000 labels' in md and '| LM pretraining |' in md

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
    assert 'pretrain: using' in r.stdout and 'finetune: using' in r.stdout
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
