"""`batchnorm_backward` of `exp.nb_07`: against autograd in float64 and central differences, on random shapes."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from exp import nb_07

pytestmark = pytest.mark.nb07


def shapes():
    "(n, c) or (n, c, h, w) with at least two values per channel."
    small = st.integers(1, 4)
    two_d = st.tuples(st.integers(2, 6), small)
    four_d = st.tuples(st.integers(1, 4), small, small, small).filter(lambda s: s[0] * s[2] * s[3] >= 2)
    return st.one_of(two_d, four_d)


def problem(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1
    c = shape[1]
    gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(c, generator=g, dtype=torch.float64)
    dout = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, gamma, beta, dout


def assert_rel_close(a, b):
    "rtol 1e-7, with an absolute floor of 1e-7 of b's scale (elements that cancel to ~0)."
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7 * max(b.abs().max().item(), 1e-12))


@settings(deadline=None, max_examples=60)
@given(shapes(), st.integers(0, 2**31 - 1))
def test_matches_autograd_float64(shape, seed):
    x, gamma, beta, dout = problem(shape, seed)
    for forward in ('ours', 'torch'):
        xr, gr, br = (t.clone().requires_grad_() for t in (x, gamma, beta))
        if forward == 'ours':
            bn = nb_07.BatchNorm(shape[1]).double()
            with torch.no_grad(): bn.weight.copy_(gr); bn.bias.copy_(br)
            bn(xr).backward(dout)
            gr_grad, br_grad = bn.weight.grad, bn.bias.grad
        else:
            F.batch_norm(xr, None, None, gr, br, training=True, eps=1e-5).backward(dout)
            gr_grad, br_grad = gr.grad, br.grad
        dx, dgamma, dbeta = nb_07.batchnorm_backward(dout, x, gamma)
        assert_rel_close(dx, xr.grad); assert_rel_close(dgamma, gr_grad); assert_rel_close(dbeta, br_grad)


def bn_train(x, gamma, beta, eps=1e-5):
    dims = [0] + list(range(2, x.dim()))
    s = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = x.mean(dims).view(s), x.var(dims, correction=0).view(s)
    return (x - mean) / (var + eps).sqrt() * gamma.view(s) + beta.view(s)


@settings(deadline=None, max_examples=25)
@given(shapes(), st.integers(0, 2**31 - 1))
def test_matches_central_differences(shape, seed):
    x, gamma, beta, dout = problem(shape, seed)
    dx, dgamma, dbeta = nb_07.batchnorm_backward(dout, x, gamma)
    nb_07.check_grad(lambda x_: (dout * bn_train(x_, gamma, beta)).sum(), x, dx)
    nb_07.check_grad(lambda g_: (dout * bn_train(x, g_, beta)).sum(), gamma, dgamma)
    nb_07.check_grad(lambda b_: (dout * bn_train(x, gamma, b_)).sum(), beta, dbeta)


def test_central_differences_catch_a_wrong_formula():
    "The check can fail: forget the x-hat term of the closed form and the finite differences disagree."
    x, gamma, beta, dout = problem((5, 3, 2, 2), 0)
    dx, _, _ = nb_07.batchnorm_backward(dout, x, gamma)
    dims, s = (0, 2, 3), (1, -1, 1, 1)
    wrong = dx + gamma.view(s) * (dout * bn_train(x, torch.ones(3, dtype=torch.float64),
                                                  torch.zeros(3, dtype=torch.float64))).sum(dims).view(s) / 20
    with pytest.raises(AssertionError):
        nb_07.check_grad(lambda x_: (dout * bn_train(x_, gamma, beta)).sum(), x, wrong)


@settings(deadline=None, max_examples=30)
@given(shapes(), st.integers(0, 2**31 - 1))
def test_dx_sums_to_zero_and_is_orthogonal_to_xhat(shape, seed):
    x, gamma, _, dout = problem(shape, seed)
    dx, _, _ = nb_07.batchnorm_backward(dout, x, gamma, eps=0.)
    dims = [0] + list(range(2, x.dim()))
    std = x.std(dims, correction=0, keepdim=True)
    xhat = (x - x.mean(dims, keepdim=True)) / std
    s = (1, -1) + (1,) * (x.dim() - 2)
    scale = (dout.abs() * gamma.view(s) / std).sum(dims)   # the terms' size before they cancel
    assert (dx.sum(dims).abs() / scale).max() < 1e-10
    assert ((dx * xhat).sum(dims).abs() / scale).max() < 1e-10


def test_float32_also_close():
    x, gamma, beta, dout = (t.float() for t in problem((8, 4, 3, 3), 1))
    xr = x.clone().requires_grad_()
    F.batch_norm(xr, None, None, gamma, beta, training=True).backward(dout)
    torch.testing.assert_close(nb_07.batchnorm_backward(dout, x, gamma)[0], xr.grad, rtol=1e-4, atol=1e-5)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r'dout \(2, 3\).*\(2, 4\)'):
        nb_07.batchnorm_backward(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(4))
    with pytest.raises(ValueError, match=r'gamma \(3,\)'):
        nb_07.batchnorm_backward(torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2), torch.ones(3))
