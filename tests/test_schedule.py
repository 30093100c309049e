"One-cycle schedule, discriminative learning rates and gradual unfreezing, checked against closed forms."
import math
from functools import partial
import numpy as np, pytest, torch
from torch import nn
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders, TfmdDL
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from fastai.optimizer import Adam, SGD, OptimWrapper
from fastai.torch_core import params, even_mults
import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
from multifit_fastai.callbacks import (discriminative_lrs, CosineOneCycle, fit_cosine_one_cycle, GradualUnfreezing)


def tiny_learner(n_batches=4, bs=8, n_groups=3, opt_func=Adam, lr=1e-3):
    torch.manual_seed(0)
    def ds(n):
        x = torch.randn(n * bs, 4)
        return list(zip(x, x.sum(1, keepdim=True)))
    dls = DataLoaders(TfmdDL(ds(n_batches), bs=bs, shuffle=True), TfmdDL(ds(1), bs=bs))
    layers = [nn.Linear(4, 6)] + [nn.Linear(6, 6) for _ in range(n_groups - 2)] + [nn.Linear(6, 1)]
    model = nn.Sequential(*layers)
    return Learner(dls, model, loss_func=MSELossFlat(), opt_func=opt_func, lr=lr,
                   splitter=lambda m: [params(l) for l in m])

def fit(learn, *args, **kwargs):
    with learn.no_logging(), learn.no_bar(): learn.fit(*args, **kwargs)


def cos_anneal(a, b, t): return a + (b - a) * (1 - math.cos(math.pi * t)) / 2

def expected(i, n, lr, div=25., div_final=25e4, pct=0.3, moms=(0.8, 0.7, 0.8)):
    "Closed-form (lr, mom) of step `i` (0-based) of `n`"
    pos = i / n
    if pos < pct: t = pos / pct; return cos_anneal(lr / div, lr, t), cos_anneal(moms[0], moms[1], t)
    t = (pos - pct) / (1 - pct); return cos_anneal(lr, lr / div_final, t), cos_anneal(moms[1], moms[2], t)

def assert_rel(a, b, rtol=1e-5):
    "fastai computes the phase position in float32, hence a relative tolerance"
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol)


@pytest.mark.parametrize('n', [1, 2, 3, 5])
def test_discriminative_lrs(n):
    lrs = discriminative_lrs(3e-3, n)
    assert_rel(lrs, [3e-3 / 2.6 ** k for k in range(n - 1, -1, -1)], rtol=1e-12)
    s = discriminative_lrs(3e-3, n, as_slice=True)
    assert s == slice(3e-3 / 2.6 ** (n - 1), 3e-3)
    if n > 1: assert_rel(even_mults(s.start, s.stop, n), lrs, rtol=1e-12)
    learn = tiny_learner(n_groups=max(n, 2))
    if n >= 2:
        learn.create_opt(); learn.opt.set_hyper('lr', s)
        assert_rel([h['lr'] for h in learn.opt.hypers], lrs, rtol=1e-12)
    assert_rel(discriminative_lrs(1., 3, factor=2.), [.25, .5, 1.], rtol=1e-12)


def test_defaults_are_fastai_v1():
    cb = CosineOneCycle()
    assert (cb.div, cb.div_final, cb.pct_start, tuple(cb.moms)) == (25., 25e4, 0.3, (0.8, 0.7, 0.8))
    import inspect
    sig = inspect.signature(fit_cosine_one_cycle).parameters
    assert {k: sig[k].default for k in ('div', 'div_final', 'pct_start', 'moms')} == \
           dict(div=25., div_final=25e4, pct_start=0.3, moms=(0.8, 0.7, 0.8))


def test_schedule_default_all_steps_all_groups():
    learn = tiny_learner(n_batches=4)  # 3 epochs x 4 batches = 12 steps; warm-up 3.6 steps
    cb = CosineOneCycle(discriminative_lrs(1e-2, 3, as_slice=True))
    fit(learn, 3, cbs=cb)
    n, lr_top = 12, 1e-2
    want = np.array([expected(i, n, lr_top) for i in range(n)])
    assert_rel(learn.recorder.hps['lr'], want[:, 0])
    assert_rel(learn.recorder.hps['mom'], want[:, 1])
    g_lr, g_mom = np.array(cb.group_hps['lr']), np.array(cb.group_hps['mom'])
    assert g_lr.shape == (n, 3)
    for k, lr in enumerate(discriminative_lrs(1e-2, 3)):
        assert_rel(g_lr[:, k], [expected(i, n, lr)[0] for i in range(n)])
        assert_rel(g_mom[:, k], want[:, 1])
    # landmarks: start, around the peak, end
    assert_rel(g_lr[0], discriminative_lrs(1e-2, 3) / 25)
    assert g_lr[:, 2].argmax() == 4 and learn.recorder.hps['mom'][0] == pytest.approx(0.8)
    assert_rel(learn.recorder.hps['lr'][-1], cos_anneal(1e-2, 1e-2 / 25e4, (11 / 12 - .3) / .7))


def test_schedule_custom_params_and_list_lr():
    learn = tiny_learner(n_batches=5)
    lrs = [1e-4, 2e-3, 5e-2]
    cb = CosineOneCycle(lrs, div=10., div_final=1e3, pct_start=0.4, moms=(0.95, 0.85, 0.9))
    fit(learn, 2, cbs=cb)
    g = np.array(cb.group_hps['lr'])
    for k, lr in enumerate(lrs):
        want = np.array([expected(i, 10, lr, 10., 1e3, 0.4, (0.95, 0.85, 0.9)) for i in range(10)])
        assert_rel(g[:, k], want[:, 0])
        assert_rel(np.array(cb.group_hps['mom'])[:, k], want[:, 1])
    assert_rel(g[4], lrs)  # step 4 of 10 = pct_start: the peak, exactly lr_max


def test_lr_from_fit_and_learner():
    learn = tiny_learner(lr=3e-3)
    fit(learn, 1, cbs=CosineOneCycle())  # lr_max None: learn.lr
    assert_rel(learn.recorder.hps['lr'], [expected(i, 4, 3e-3)[0] for i in range(4)])
    learn = tiny_learner()
    fit(learn, 1, lr=7e-3, cbs=CosineOneCycle())  # lr_max None: the lr given to fit
    assert_rel(learn.recorder.hps['lr'], [expected(i, 4, 7e-3)[0] for i in range(4)])


def test_moms_none_and_beta2_untouched():
    learn = tiny_learner()
    fit(learn, 1, cbs=CosineOneCycle(1e-2, moms=None))
    assert set(learn.recorder.hps) == {'lr'}
    assert [h['mom'] for h in learn.opt.hypers] == [0.9] * 3 and [h['sqr_mom'] for h in learn.opt.hypers] == [0.99] * 3


class _TorchBetas(Callback):
    "Read beta1 from the wrapped PyTorch optimizer itself after each step"
    order = 70
    def before_fit(self): self.betas = []
    def after_batch(self):
        if self.training: self.betas.append([pg['betas'][0] for pg in self.opt.opt.param_groups])

def test_momentum_is_adam_beta1_in_torch_optimizer():
    learn = tiny_learner(opt_func=partial(OptimWrapper, opt=torch.optim.Adam))
    probe = _TorchBetas()
    fit(learn, 2, cbs=[CosineOneCycle(1e-2), probe])
    want = [expected(i, 8, 1e-2)[1] for i in range(8)]
    assert_rel(np.array(probe.betas), np.repeat(np.array(want)[:, None], 3, 1))


def test_sgd_momentum():
    learn = tiny_learner(opt_func=partial(SGD, mom=0.9))
    fit(learn, 1, cbs=CosineOneCycle(1e-2))
    assert_rel(learn.recorder.hps['mom'], [expected(i, 4, 1e-2)[1] for i in range(4)])


def test_fit_cosine_one_cycle_and_resume():
    learn = tiny_learner()
    fit_cosine_one_cycle(learn, 2, 1e-2, wd=0.05)
    want = np.array([expected(i, 8, 1e-2) for i in range(8)])
    assert_rel(learn.recorder.hps['lr'], want[:, 0]); assert_rel(learn.recorder.hps['mom'], want[:, 1])
    assert [h['wd'] for h in learn.opt.hypers] == [0.05] * 3
    assert not any(isinstance(cb, CosineOneCycle) for cb in learn.cbs)  # only for that fit
    # resuming at epoch 1 of 2 continues the same cycle
    learn = tiny_learner()
    with learn.no_logging(), learn.no_bar(): fit_cosine_one_cycle(learn, 2, 1e-2, start_epoch=1)
    assert_rel(learn.recorder.hps['lr'], want[4:, 0])


def test_changes_the_weights():
    "Training under the schedule works: the tiny regression model at least halves its validation loss"
    learn = tiny_learner(n_batches=8)
    before = learn.validate()[0]
    fit(learn, 4, cbs=CosineOneCycle(3e-2))
    assert learn.validate()[0] < before / 2


@pytest.mark.parametrize('bad, msg', [(dict(pct_start=-0.1), 'pct_start'), (dict(pct_start=1.5), 'pct_start'),
                                      (dict(div=0), 'div'), (dict(div_final=-1), 'div'),
                                      (dict(moms=(0.9,)), 'moms must be')])
def test_bad_arguments(bad, msg):
    with pytest.raises(ValueError, match=msg): CosineOneCycle(1e-2, **bad)


# ---- gradual unfreezing ----

class _Probe(Callback):
    order = 10
    def before_fit(self): self.trainable, self.changed = [], []
    def before_epoch(self):
        self.trainable.append([all(p.requires_grad for p in g) for g in self.opt.param_lists])
        self.w = [[p.detach().clone() for p in g] for g in self.opt.param_lists]
    def after_epoch(self):
        self.changed.append([any(not torch.equal(a, p) for a, p in zip(w, g)) for w, g in zip(self.w, self.opt.param_lists)])

def test_gradual_unfreezing_per_epoch():
    learn, probe = tiny_learner(n_groups=4), _Probe()
    fit(learn, 5, 1e-2, cbs=[GradualUnfreezing(), probe])
    want = [[False, False, False, True], [False, False, True, True], [False, True, True, True]] + [[True] * 4] * 2
    assert probe.trainable == want
    assert probe.changed == want  # frozen groups really do not move, trainable ones do

def test_gradual_unfreezing_every_and_with_schedule():
    learn, probe = tiny_learner(n_groups=3), _Probe()
    cb = CosineOneCycle(discriminative_lrs(1e-2, 3, as_slice=True))
    fit(learn, 4, cbs=[GradualUnfreezing(n_start=1, every=2), probe, cb])
    assert probe.trainable == [[False, False, True]] * 2 + [[False, True, True]] * 2
    assert_rel(learn.recorder.hps['lr'], [expected(i, 16, 1e-2)[0] for i in range(16)])  # the schedule is untouched

def test_gradual_unfreezing_bad():
    with pytest.raises(ValueError, match='at least 1'): GradualUnfreezing(every=0)
