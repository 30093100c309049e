"Label-smoothing loss: closed-form values, gradients, bad input, and the fastai plumbing of a real `Learner`."
import math, pickle
import pytest, torch, torch.nn.functional as F
from torch import nn
from fastai.data.core import Datasets, DataLoaders, TfmdDL
from fastai.data.transforms import Categorize
from fastai.learner import Learner
from fastai.losses import LabelSmoothingCrossEntropyFlat
from fastai.metrics import accuracy
from fastai.interpret import ClassificationInterpretation
import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
from multifit_fastai.losses import LabelSmoothingCE, LabelSmoothingLoss, soft_accuracy


@pytest.mark.parametrize('eps', [0., 0.1, 0.35])
@pytest.mark.parametrize('c', [2, 4, 30])
def test_matches_torch_label_smoothing(eps, c):
    g = torch.Generator().manual_seed(c)
    x, y = torch.randn(16, c, generator=g) * 3, torch.randint(0, c, (16,), generator=g)
    t = torch.softmax(torch.randn(16, c, generator=g), -1)
    test = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    test(LabelSmoothingLoss(eps)(x, y), F.cross_entropy(x, y, label_smoothing=eps))
    test(LabelSmoothingLoss(eps, eps_per_class=True)(x, y), F.cross_entropy(x, y, label_smoothing=eps / c))
    test(LabelSmoothingLoss(eps)(x, t), F.cross_entropy(x, t, label_smoothing=eps))
    test(LabelSmoothingLoss(eps)(x, F.one_hot(y, c).float()), LabelSmoothingLoss(eps)(x, y))
    test(LabelSmoothingLoss(eps)(x, y), LabelSmoothingCrossEntropyFlat(eps=eps)(x, y))  # fastai's hard-label version


def test_closed_form_by_hand():
    # p = softmax([log 3, 0]) = (3/4, 1/4); c = 2
    x = torch.tensor([[math.log(3.), 0.]])
    for eps, per_class in [(0.1, False), (0.1, True), (0.5, False)]:
        e = eps / 2 if per_class else eps
        q0 = 1 - e + e / 2
        want = -(q0 * math.log(.75) + (1 - q0) * math.log(.25))
        assert LabelSmoothingLoss(eps, eps_per_class=per_class)(x, torch.tensor([0])).item() == pytest.approx(want, rel=1e-6)
    # soft target (0.4, 0.6), eps 0.2 -> q = 0.8 * t + 0.1
    want = -(0.42 * math.log(.75) + 0.58 * math.log(.25))
    assert LabelSmoothingLoss(0.2)(x, torch.tensor([[.4, .6]])).item() == pytest.approx(want, rel=1e-6)
    # uniform logits: log c whatever the target and eps
    assert LabelSmoothingLoss(0.3)(torch.zeros(4, 7), torch.arange(4)).item() == pytest.approx(math.log(7), rel=1e-6)


def test_gradient_is_p_minus_q():
    "d loss / d logits = (softmax(x) - q) / n for the mean reduction"
    torch.manual_seed(1)
    n, c, eps = 6, 5, 0.1
    x = torch.randn(n, c, requires_grad=True)
    t = torch.softmax(torch.randn(n, c), -1)
    LabelSmoothingLoss(eps)(x, t).backward()
    q = (1 - eps) * t + eps / c
    torch.testing.assert_close(x.grad, (torch.softmax(x.detach(), -1) - q) / n)


def test_shapes_reduction_axis():
    torch.manual_seed(2)
    x, y = torch.randn(3, 7, 11), torch.randint(0, 11, (3, 7))   # language-model shapes
    lf = LabelSmoothingLoss()
    flat = F.cross_entropy(x.reshape(-1, 11), y.reshape(-1), label_smoothing=0.1, reduction='none')
    with_none = LabelSmoothingLoss(reduction='none')(x, y)
    torch.testing.assert_close(with_none, flat)
    torch.testing.assert_close(LabelSmoothingLoss(reduction='sum')(x, y), flat.sum())
    torch.testing.assert_close(LabelSmoothingLoss(axis=1)(x.transpose(1, 2), y), lf(x, y))
    soft = torch.softmax(torch.randn(3, 7, 11), -1)
    torch.testing.assert_close(LabelSmoothingLoss(axis=1)(x.transpose(1, 2), soft.transpose(1, 2)), lf(x, soft))
    torch.testing.assert_close(lf(x.half(), y), lf(x.half().float(), y))  # fp16 logits: log-softmax in float32
    assert lf(x.half(), y).dtype == torch.float32


@pytest.mark.parametrize('targ, msg', [
    (torch.tensor([0, 1, 4]), 'label 4 is out of range for 4 classes'),
    (torch.tensor([0, -1, 2]), 'label -1 is out of range'),
    (torch.tensor([0, 1]), '3 predictions but 2 labels'),
    (torch.full((3, 3), 1 / 3), 'must have 4 columns'),
    (torch.full((3, 4), 0.3), 'rows must sum to 1'),
    (torch.tensor([[1.5, -.5, 0., 0.]] * 3), 'negative'),
    (torch.full((2, 4), 0.25), '3 predictions but 2 soft target rows'),
])
def test_bad_targets(targ, msg):
    with pytest.raises(ValueError, match=msg): LabelSmoothingLoss()(torch.randn(3, 4), targ)


@pytest.mark.parametrize('eps', [1., 1.2, -0.01, float('nan'), 'x', None])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match='eps must'): LabelSmoothingLoss(eps)


def test_bad_reduction():
    with pytest.raises(ValueError, match='reduction must be'): LabelSmoothingCE(reduction='avg')


def test_pickle_roundtrip():
    "`learn.export` pickles the loss"
    lf = pickle.loads(pickle.dumps(LabelSmoothingLoss(0.2, eps_per_class=True, axis=1)))
    x, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    torch.testing.assert_close(lf(x.T[None], y[None]), F.cross_entropy(x, y, label_smoothing=0.2 / 3))


def test_soft_accuracy():
    x = torch.tensor([[2., 1., 0.], [0., 1., 3.], [1., 0., 0.]])
    assert soft_accuracy(x, torch.tensor([0, 2, 1])).item() == pytest.approx(2 / 3)
    assert soft_accuracy(x, torch.tensor([[.5, .3, .2], [.1, .1, .8], [.2, .7, .1]])).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match='shape of the predictions'): soft_accuracy(x, torch.rand(3, 2))


# ---- inside a Learner ----

NAMES = ['apple', 'banana', 'cherry']

def _problem(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    W = torch.randn(4, 3, generator=g) * 3
    return X, (X @ W).argmax(1), W

def _learner(loss_func, metrics=accuracy, n_train=96):
    X, y, _ = _problem()
    labels = [NAMES[i] for i in y]
    def get_x(i): return X[i]
    def get_y(i): return labels[i]
    dsets = Datasets(range(len(X)), [[get_x], [get_y, Categorize()]],
                     splits=[list(range(n_train)), list(range(n_train, len(X)))])
    torch.manual_seed(0)
    learn = Learner(dsets.dataloaders(bs=16), nn.Linear(4, 3), loss_func=loss_func, metrics=metrics, lr=0.1)
    return learn, X, y


def test_learner_hard_labels():
    learn, X, y = _learner(LabelSmoothingLoss())
    with learn.no_logging(), learn.no_bar(): learn.fit(8)
    Xv, yv = X[96:], y[96:]
    # validate(): the loss is the closed form over the validation set, accuracy is fastai's
    loss, acc = learn.validate()
    with torch.no_grad(): logits = learn.model(Xv)
    assert loss == pytest.approx(F.cross_entropy(logits, yv, label_smoothing=0.1).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == yv).float().mean().item())
    assert acc >= 0.8, 'a linear model should learn a linearly separable 3-class problem'
    # get_preds: probabilities (activation), decoded class ids, per-item losses (reduction switched to 'none')
    probs, targs, dec, losses = learn.get_preds(with_decoded=True, with_loss=True)
    torch.testing.assert_close(probs, torch.softmax(logits, 1))
    assert torch.equal(dec, logits.argmax(1)) and torch.equal(targs, yv)
    torch.testing.assert_close(losses, F.cross_entropy(logits, yv, label_smoothing=0.1, reduction='none'))
    assert learn.loss_func.reduction == 'mean'
    # predict: decoded through the vocabulary
    for i in (96, 100, 119):
        label, idx, p = learn.predict(i)
        assert label == NAMES[int(idx)] and int(idx) == int(logits[i - 96].argmax())
        torch.testing.assert_close(p, torch.softmax(logits[i - 96], 0))
    # ClassificationInterpretation
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert cm.shape == (3, 3) and cm.sum() == 24 and cm.trace() == round(acc * 24)
    torch.testing.assert_close(interp.losses, losses)


def test_learner_soft_train_hard_valid():
    "Distillation: the teacher's probabilities for training, gold labels for validation, one loss and one metric"
    X, y, W = _problem()
    teacher = torch.softmax(X @ W / 2, 1)  # a soft, mostly right teacher
    train = TfmdDL(list(zip(X[:96], teacher[:96])), bs=16, shuffle=True)
    valid = TfmdDL(list(zip(X[96:], y[96:])), bs=16)
    torch.manual_seed(0)
    learn = Learner(DataLoaders(train, valid), nn.Linear(4, 3), loss_func=LabelSmoothingLoss(),
                    metrics=soft_accuracy, lr=0.1)
    with learn.no_logging(), learn.no_bar(): learn.fit(8)
    with torch.no_grad(): logits = learn.model(X)
    loss, acc = learn.validate()
    assert loss == pytest.approx(F.cross_entropy(logits[96:], y[96:], label_smoothing=0.1).item(), rel=1e-5)
    assert acc == pytest.approx((logits[96:].argmax(1) == y[96:]).float().mean().item())
    assert acc >= 0.8
    # on the soft training targets soft_accuracy compares with the teacher's argmax; fastai's accuracy refuses them
    train_loss, train_acc = learn.validate(dl=TfmdDL(list(zip(X[:96], teacher[:96])), bs=16))
    assert train_loss == pytest.approx(F.cross_entropy(logits[:96], teacher[:96], label_smoothing=0.1).item(), rel=1e-5)
    assert train_acc == pytest.approx((logits[:96].argmax(1) == teacher[:96].argmax(1)).float().mean().item())
    with pytest.raises(AssertionError): accuracy(logits[:96], teacher[:96])
