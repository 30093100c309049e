"ForgetMult, QRNNLayer and QRNN (multifit_fastai.qrnn): values, gradients, options, chunking, errors, GPU kernel."
import warnings
import pytest, torch
import multifit_fastai.qrnn as Q
from multifit_fastai.qrnn import ForgetMult, forget_mult, QRNNLayer, QRNN, QRNNLinear, FusedForgetMultWarning

def naive_forget_mult(f, z, h0=None, batch_first=True):
    "Reference: the recurrence as a python loop, differentiated by autograd"
    if batch_first: f, z = f.transpose(0, 1), z.transpose(0, 1)
    c, out = (torch.zeros_like(f[0]) if h0 is None else h0), []
    for t in range(f.shape[0]):
        c = f[t] * z[t] + (1 - f[t]) * c
        out.append(c)
    out = torch.stack(out)
    return out.transpose(0, 1) if batch_first else out

def _inputs(shape, with_h0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(shape, generator=g, dtype=dtype)
    z = torch.randn(shape, generator=g, dtype=dtype)
    h0 = torch.randn(shape[0] if len(shape) == 3 else 1, shape[-1], generator=g, dtype=dtype) if with_h0 else None
    return f, z, h0

# ------------------------------------------------------------------------------------------------------------ ForgetMult
def test_golden_vector():
    x = torch.tensor([3., 4, 5, 6, 7]).view(1, 5, 1)
    out = forget_mult(torch.full_like(x, 0.5), x, torch.ones(1, 1))
    assert out.flatten().tolist() == [2., 3., 4., 5., 6.]

@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('with_h0', [True, False])
def test_forget_mult_matches_naive(batch_first, with_h0):
    bs, sl, nh = 3, 7, 5
    f, z, h0 = _inputs((bs, sl, nh), with_h0)
    if not batch_first: f, z = f.transpose(0, 1).contiguous(), z.transpose(0, 1).contiguous()
    gout = torch.randn(f.shape, generator=torch.Generator().manual_seed(1))
    leaves_a = [t.clone().requires_grad_() for t in (f, z, h0) if t is not None]
    leaves_b = [t.clone().requires_grad_() for t in (f, z, h0) if t is not None]
    out = forget_mult(*leaves_a[:2], leaves_a[2] if with_h0 else None, batch_first=batch_first)
    ref = naive_forget_mult(*leaves_b[:2], leaves_b[2] if with_h0 else None, batch_first=batch_first)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    out.backward(gout); ref.backward(gout)
    for a, b in zip(leaves_a, leaves_b): torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)

def test_backward_is_one_node():
    f, z, _ = _inputs((2, 50, 4), False)
    out = forget_mult(f.requires_grad_(), z)
    assert type(out.grad_fn).__name__ == 'ForgetMultBackward'  # no per-step autograd graph

@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('with_h0', [True, False])
def test_gradcheck_fp64(batch_first, with_h0):
    f, z, _ = _inputs((3, 4, 2), False, torch.float64, seed=2)
    h0 = torch.randn(f.shape[0 if batch_first else 1], 2, dtype=torch.float64) if with_h0 else None
    args = [f.requires_grad_(), z.requires_grad_(), None if h0 is None else h0.requires_grad_()]
    assert torch.autograd.gradcheck(lambda f, z, h: forget_mult(f, z, h, batch_first=batch_first), args)

def test_fp64_and_fp32_exact_against_reference():
    for dt in (torch.float32, torch.float64):
        f, z, h0 = _inputs((2, 9, 3), True, dt)
        out = forget_mult(f, z, h0)
        assert out.dtype == dt
        torch.testing.assert_close(out, naive_forget_mult(f, z, h0))

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_fp32(dtype):
    f, z, h0 = _inputs((2, 200, 8), True)
    fl, zl, hl = (t.to(dtype).requires_grad_() for t in (f, z, h0))
    out = forget_mult(fl, zl, hl)
    assert out.dtype == dtype
    ref = naive_forget_mult(fl.detach().float(), zl.detach().float(), hl.detach().float())
    # computed in fp32 and rounded once: within one rounding of the fp32 result on the same (rounded) inputs
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref, rtol=eps, atol=eps)
    out.sum().backward()
    assert fl.grad.dtype == dtype and hl.grad.dtype == dtype and torch.isfinite(fl.grad.float()).all()

def test_forget_mult_errors():
    with pytest.raises(ValueError, match='3-dim'): forget_mult(torch.rand(3, 4), torch.rand(3, 4))
    with pytest.raises(ValueError, match='same shape'): forget_mult(torch.rand(2, 3, 4), torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r'h0 must have shape \(batch, hidden\) = \(2, 4\)'):
        forget_mult(torch.rand(2, 3, 4), torch.rand(2, 3, 4), torch.zeros(3, 4))
    with pytest.raises(TypeError, match='floating point'): forget_mult(torch.rand(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='impl must be'): forget_mult(torch.rand(2, 3, 4), torch.rand(2, 3, 4), impl='x')

# ----------------------------------------------------------------------------------------------------- fused kernel (GPU)
def test_fused_failure_is_loud(monkeypatch):
    "A kernel that cannot be built warns (auto) or raises (fused); it never falls back silently"
    def broken(): raise ImportError('no triton here')
    monkeypatch.setattr(Q, '_build_fused', broken)
    monkeypatch.setattr(Q, '_FUSED', {})
    with pytest.warns(FusedForgetMultWarning, match='no triton here'): assert Q._fused_kernels('auto') is None
    with pytest.raises(RuntimeError, match='no triton here'): Q._fused_kernels('fused')
    monkeypatch.setattr(Q, '_FUSED', {})
    with pytest.raises(RuntimeError, match='no triton here'): Q._fused_kernels('fused')

def test_fused_needs_cuda():
    with pytest.raises(RuntimeError, match='needs CUDA'): forget_mult(torch.rand(1, 2, 3), torch.rand(1, 2, 3), impl='fused')

def test_no_kernel_built_at_import():
    import subprocess, sys
    code = ("import sys, multifit_fastai, multifit_fastai.qrnn as Q; assert Q._FUSED == {}, Q._FUSED; "
            "assert 'triton' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('with_h0', [True, False])
@pytest.mark.parametrize('batch_first', [True, False])
def test_fused_matches_pure_on_gpu(dtype, with_h0, batch_first):
    f, z, h0 = _inputs((4, 37, 300), with_h0)
    if not batch_first: f, z = f.transpose(0, 1).contiguous(), z.transpose(0, 1).contiguous()
    ins = [t.cuda().to(dtype) for t in (f, z, h0) if t is not None]
    a = [t.clone().requires_grad_() for t in ins]; b = [t.clone().requires_grad_() for t in ins]
    with warnings.catch_warnings():
        warnings.simplefilter('error', FusedForgetMultWarning)
        out = forget_mult(a[0], a[1], a[2] if with_h0 else None, batch_first=batch_first, impl='fused')
    ref = forget_mult(b[0], b[1], b[2] if with_h0 else None, batch_first=batch_first, impl='pure')
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn_like(out)
    out.backward(g); ref.backward(g)
    for x, y in zip(a, b): torch.testing.assert_close(x.grad, y.grad, **tol)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_qrnn_gpu_matches_cpu():
    torch.manual_seed(0)
    m = QRNN(8, 16, n_layers=2, window=[2, 1]).eval(); x = torch.randn(3, 20, 8)
    ref = m(x)[0]
    torch.testing.assert_close(m.cuda()(x.cuda())[0].cpu(), ref, rtol=1e-4, atol=1e-4)

# ----------------------------------------------------------------------------------------------------------- QRNNLinear
def test_tiled_linear_matches_linear(monkeypatch):
    monkeypatch.setattr(Q, 'QRNN_CPU_TILE', 8)
    torch.manual_seed(0)
    lin = QRNNLinear(13, 21); x = torch.randn(5, 11, 13, requires_grad=True)
    y = lin(x); ref = torch.nn.functional.linear(x, lin.weight, lin.bias)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (x, lin.weight, lin.bias), g), torch.autograd.grad(ref, (x, lin.weight, lin.bias), g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert type(y.grad_fn).__name__ != 'AddmmBackward0'

# ------------------------------------------------------------------------------------------------------------ QRNNLayer
def ref_layer(layer, x, h0=None, prev=None):
    "QRNNLayer written out from its definition (batch-first input, eval mode)"
    W, b = layer.linear.weight, layer.linear.bias
    if layer.backward: x = x.flip(1)
    if layer.window == 2:
        p = torch.zeros_like(x[:, :1]) if prev is None else prev
        x = torch.cat([x, torch.cat([p, x[:, :-1]], 1)], 2)
    g = (x @ W.T + b).chunk(3 if layer.output_gate else 2, 2)
    c = naive_forget_mult(torch.sigmoid(g[1]), torch.tanh(g[0]), h0)
    out = torch.sigmoid(g[2]) * c if layer.output_gate else c
    return (out.flip(1) if layer.backward else out), c[:, -1]

@pytest.mark.parametrize('window', [1, 2])
@pytest.mark.parametrize('output_gate', [True, False])
@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('backward', [True, False])
@pytest.mark.parametrize('with_h0', [True, False])
def test_layer_matches_definition(window, output_gate, batch_first, backward, with_h0):
    torch.manual_seed(0)
    layer = QRNNLayer(4, 6, window=window, output_gate=output_gate, batch_first=batch_first, backward=backward).eval()
    x, h0 = torch.randn(3, 5, 4), (torch.randn(3, 6) if with_h0 else None)
    out, h = layer(x if batch_first else x.transpose(0, 1), h0)
    if not batch_first: out = out.transpose(0, 1)
    ref, rh = ref_layer(layer, x, h0)
    torch.testing.assert_close(out, ref); torch.testing.assert_close(h, rh)
    assert layer.linear.weight.shape == ((3 if output_gate else 2) * 6, window * 4)

def test_layer_gradients_flow_to_all_inputs():
    layer = QRNNLayer(4, 6, window=2)
    x, h0 = torch.randn(2, 5, 4, requires_grad=True), torch.randn(2, 6, requires_grad=True)
    out, h = layer(x, h0)
    (out.sum() + h.sum()).backward()
    for t in (x, h0, layer.linear.weight, layer.linear.bias): assert t.grad is not None and t.grad.abs().sum() > 0

def test_zoneout_keeps_previous_state_in_training_only():
    torch.manual_seed(0)
    layer = QRNNLayer(8, 64, zoneout=0.5, output_gate=False)
    x = torch.randn(4, 30, 8)
    layer.train(); c, _ = layer(x)
    kept = (c[:, 1:] == c[:, :-1]).float().mean().item()  # zoned-out units copy c_{t-1} exactly
    assert 0.4 < kept < 0.6, kept
    layer.eval()
    assert (layer(x)[0][:, 1:] == layer(x)[0][:, :-1]).float().mean() < 0.01  # no mask in evaluation...
    z, f = (layer.linear(x.transpose(0, 1))).chunk(2, 2)                       # ...but f scaled by its expectation
    ref = forget_mult(torch.sigmoid(f) * 0.5, torch.tanh(z), batch_first=False).transpose(0, 1)
    torch.testing.assert_close(layer(x)[0], ref)

def test_zoneout_train_and_eval_expectations_agree():
    torch.manual_seed(0)
    layer = QRNNLayer(4, 16, zoneout=0.4, output_gate=False)
    x, h0 = torch.randn(1, 1, 4).expand(50000, 1, 4), torch.randn(1, 16).expand(50000, 16)
    layer.train(); mean_train = layer(x, h0)[0].mean(0)
    layer.eval(); torch.testing.assert_close(mean_train, layer(x[:1], h0[:1])[0][0], atol=1e-2, rtol=0)

@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_pure_loop_half_gates_fp32_h0(monkeypatch, dtype):
    "the pure loop in half precision (a GPU without the fused kernel) with an fp32 h0, as under autocast"
    import multifit_fastai.qrnn as q
    monkeypatch.setattr(q, '_LOW_PRECISION', ())  # no CPU upcast: the loop itself runs in `dtype`
    f = torch.rand(6, 2, 3).to(dtype).requires_grad_(); z = torch.randn(6, 2, 3).to(dtype).requires_grad_()
    h0 = torch.randn(2, 3, requires_grad=True)
    c = forget_mult(f, z, h0, batch_first=False, impl='pure')
    c.float().sum().backward()
    assert (c.dtype, f.grad.dtype, z.grad.dtype, h0.grad.dtype) == (dtype, dtype, dtype, torch.float32)

def test_layer_bf16_autocast_keeps_state_fp32():
    torch.manual_seed(0)
    layer = QRNNLayer(16, 32, window=2, save_prev_x=True)
    x = torch.randn(4, 300, 16)
    ref, href = layer(x); layer.reset()
    with torch.autocast('cpu', dtype=torch.bfloat16): out, h = layer(x)
    assert out.dtype == h.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=3e-2, rtol=3e-2)
    out.sum().backward()
    assert layer.linear.weight.grad.dtype == torch.float32

def test_save_prev_x_chunks_and_smaller_batch():
    torch.manual_seed(0)
    layer = QRNNLayer(4, 6, window=2, save_prev_x=True).eval()
    x = torch.randn(4, 9, 4)
    full, hf = layer(x); layer.reset()
    o1, h1 = layer(x[:, :5]); o2, h2 = layer(x[:, 5:], h1)
    torch.testing.assert_close(torch.cat([o1, o2], 1), full); torch.testing.assert_close(h2, hf)
    layer.reset(); layer(x[:, :5])
    o2s, _ = layer(x[:2, 5:], h1[:2])  # smaller last batch: prev_x is cut
    torch.testing.assert_close(o2s, full[:2, 5:])
    layer.reset(); layer(x[:2, :5]); o3, _ = layer(x[:, 5:])  # larger batch: zero-padded prev_x
    torch.testing.assert_close(o3[:2], ref_layer(layer, x[:2, 5:], prev=x[:2, 4:5])[0])
    torch.testing.assert_close(o3[2:], ref_layer(layer, x[2:, 5:])[0])
    layer.reset(); assert layer.prev_x is None
    layer.reset(); torch.testing.assert_close(layer(x[:, 5:])[0], ref_layer(layer, x[:, 5:])[0])

def test_layer_errors():
    layer = QRNNLayer(4, 6)
    with pytest.raises(ValueError, match='3-dim input'): layer(torch.randn(3, 4))
    with pytest.raises(ValueError, match='expects inputs with 4 features, got 5'): layer(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match='empty sequence'): layer(torch.randn(2, 0, 4))
    with pytest.raises(ValueError, match='window must be 1 or 2'): QRNNLayer(4, window=3)
    with pytest.raises(ValueError, match='zoneout'): QRNNLayer(4, zoneout=1.)
    with pytest.raises(ValueError, match='cannot save_prev_x'): QRNNLayer(4, backward=True, save_prev_x=True)

# ----------------------------------------------------------------------------------------------------------------- QRNN
@pytest.mark.parametrize('batch_first', [True, False])
def test_two_chunks_equal_one_run(batch_first):
    "BPTT: two chunks in sequence (state and prev_x carried) equal one run on their concatenation"
    torch.manual_seed(0)
    m = QRNN(5, 7, n_layers=3, window=[2, 1, 2], save_prev_x=True, batch_first=batch_first).eval()
    x = torch.randn(3, 11, 5)
    tm = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    full, hf = m(tm(x)); m.reset()
    a, h1 = m(tm(x[:, :6])); b, h2 = m(tm(x[:, 6:]), h1)
    torch.testing.assert_close(torch.cat([tm(a), tm(b)], 1), tm(full)); torch.testing.assert_close(h2, hf)

def test_stack_is_layers_in_sequence_with_dropout_in_training():
    torch.manual_seed(0)
    m = QRNN(4, 6, n_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 4)
    m.eval(); out, h = m(x)
    o1, h1 = m.layers[0](x); o2, h2 = m.layers[1](o1)
    torch.testing.assert_close(out, o2); torch.testing.assert_close(h, torch.stack([h1, h2]))
    m.train(); assert not torch.allclose(m(x)[0], out)

def test_bidirectional():
    torch.manual_seed(0)
    m = QRNN(4, 6, n_layers=2, bidirectional=True, save_prev_x=True, window=2).eval()
    x = torch.randn(3, 5, 4)
    out, h = m(x)
    assert out.shape == (3, 5, 12) and h.shape == (4, 3, 6)
    assert [l.save_prev_x for l in m.layers] == [True, True] and [l.save_prev_x for l in m.layers_bwd] == [False, False]
    m.reset()  # the forward layers saved their last input
    f0, hf0 = m.layers[0](x); b0, hb0 = m.layers_bwd[0](x)
    torch.testing.assert_close(h[:2], torch.stack([hf0, hb0]))
    torch.testing.assert_close(b0, ref_layer(m.layers_bwd[0], x)[0])
    f1, _ = m.layers[1](torch.cat([f0, b0], 2)); b1, _ = m.layers_bwd[1](torch.cat([f0, b0], 2))
    torch.testing.assert_close(out, torch.cat([f1, b1], 2))
    assert {k.split('.')[0] for k in m.state_dict()} == {'layers', 'layers_bwd'}

def test_qrnn_hidden_and_input_errors():
    m = QRNN(4, 6, n_layers=2)
    with pytest.raises(ValueError, match=r'hidden state must have shape .* \(2, 3, 6\)'): m(torch.randn(3, 5, 4), torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match='QRNN expects inputs with 4 features, got 3'): m(torch.randn(3, 5, 3))
    with pytest.raises(ValueError, match='2 windows for 3 layers'): QRNN(4, 6, n_layers=3, window=[2, 1])

def test_inference_gates_in_place_give_the_same_outputs():
    "Under no_grad/inference_mode the gates are activated in place: outputs and states equal those with autograd"
    torch.manual_seed(0)
    for kw in (dict(window=2), dict(window=1, output_gate=False), dict(window=1, zoneout=0.2)):
        layer = QRNNLayer(6, 10, **kw).eval()
        x, h0 = torch.randn(3, 9, 6), torch.randn(3, 10)
        out, h = layer(x, h0)
        for ctx in (torch.no_grad, torch.inference_mode):
            with ctx(): out2, h2 = layer(x, h0)
            assert torch.equal(out2, out.detach()) and torch.equal(h2, h.detach())
