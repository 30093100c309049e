"Batch prediction (`MultiFiTPackage.predict`): every text gets the result fastai's own model gives it alone, in any batch."
import numpy as np, pandas as pd, pytest, torch
from multifit_fastai.data import sample_data
from multifit_fastai.tokenizer import SPTokenizer
from multifit_fastai.presets import multifit_preset
import multifit_fastai.package as P
from multifit_fastai.package import write_package, load_package, layer0_table, _encoder_of
from multifit_fastai.learner import multifit_classifier_learner, text_dataloaders

TINY = dict(emb_sz=16, n_hid=24, n_layers=3, bptt=8, max_len=40, seed=0)

@pytest.fixture(scope='module')
def sample():
    sd = sample_data()
    tok = SPTokenizer.train(sd.corpus(1500), lang='de', vocab_sz=300)
    dls = text_dataloaders(tok, sd.train[:64], sd.valid[:16], label_col='label', bs=16, seq_len=TINY['bptt'], max_len=TINY['max_len'])
    return sd, tok, dls

def _package(sample, tmp_path, arch='AWD_QRNN'):
    "A randomly initialised classifier (head too: its batch norm's running stats made non-trivial) written as a package"
    sd, tok, dls = sample
    learn = multifit_classifier_learner(dls, arch=arch, **TINY)
    torch.manual_seed(1)
    with torch.no_grad():
        for m in learn.model.modules():
            if isinstance(m, torch.nn.BatchNorm1d): m.running_mean.normal_(0, .1); m.running_var.uniform_(.5, 2)
    return load_package(write_package(learn.model, tok, learn.preset, tmp_path/arch, labels=list(dls.vocab[1])))

def _texts(sd):
    "Documents of very different lengths: a few tokens, several bptt chunks, beyond max_len"
    t = list(sd.valid.text[:30])
    return t + ['Spiel', t[0] * 6, 'Ein Editor für Texte ' * 3, t[3][:40]]

def _alone(pkg, texts):
    "fastai's classifier (SentenceEncoder + concat pooling) on each text alone: no padding, nothing to get wrong"
    m, ids = pkg.model(), pkg.tokenizer.encode_batch(texts)
    with torch.no_grad(): return np.stack([torch.softmax(m(ids[i][-pkg.config['max_len']:][None])[0], -1)[0].numpy()
                                           for i in range(len(texts))])

@pytest.mark.parametrize('arch', ['AWD_QRNN', 'AWD_LSTM'])
def test_predict_is_each_text_alone_in_any_batch(sample, tmp_path, arch):
    sd, tok, _ = sample
    pkg, texts = _package(sample, tmp_path, arch), _texts(sd)
    want = _alone(pkg, texts)
    assert len({len(o) for o in tok.encode_batch(texts).ids}) > 10 and max(map(len, tok.encode_batch(texts).ids)) > TINY['max_len']
    for bs in (1, 5, 64):
        for table in (False, True):
            got = pkg.predict(texts, bs=bs, table=table)
            np.testing.assert_allclose(got[pkg.labels].values, want, atol=2e-6)
            assert list(got.label) == [pkg.labels[i] for i in want.argmax(1)]
    assert (layer0_table(_encoder_of(pkg.model())) is None) == (arch == 'AWD_LSTM')

def test_predict_streams_in_chunks_and_keeps_the_order(sample, tmp_path, monkeypatch):
    sd, _, _ = sample
    pkg, texts = _package(sample, tmp_path), _texts(sd)
    whole = pkg.predict(texts, bs=4)
    monkeypatch.setattr(P, "PREDICT_CHUNK", 1)  # 4 texts tokenized and sorted at a time
    np.testing.assert_allclose(pkg.predict(texts, bs=4).iloc[:, 1:].values, whole.iloc[:, 1:].values, atol=1e-6)
    rev = pkg.predict(texts[::-1], bs=4)
    np.testing.assert_allclose(rev.iloc[::-1, 1:].values, whole.iloc[:, 1:].values, atol=1e-6)

def test_layer0_table_is_the_first_gate_product(sample, tmp_path):
    pkg = _package(sample, tmp_path)
    enc = _encoder_of(pkg.model())
    t, layer, e = layer0_table(enc), enc.rnns[0].layers[0], enc.encoder.weight
    a, b = t[:len(e)], t[len(e):]  # [A; B]
    test_ids = torch.tensor([5, 9, 1, 200])
    x = torch.cat([e[test_ids[1:]], e[test_ids[:-1]]], 1)  # [e(x_t), e(x_{t-1})]
    want = x @ layer.linear.weight_raw.T + layer.linear.module.bias
    torch.testing.assert_close(a[test_ids[1:]] + b[test_ids[:-1]], want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b[-1], torch.zeros_like(b[-1]))  # no previous token at the start
