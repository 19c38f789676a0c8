"""The loss functions and metric of `exp.nb_03` against torch: random, extreme and single-row inputs."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st

from exp import nb_03

pytestmark = pytest.mark.nb03

SETTINGS = settings(deadline=None, max_examples=30)
rows, classes, seeds = st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**31 - 1)
scales = st.sampled_from([1e-3, 1., 30., 1e3, 1e30])   # 1e3 and up overflow a naive exp


def logits(bs, c, scale, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bs, c, generator=g, dtype=dtype) * scale, torch.randint(0, c, (bs,), generator=g)


def assert_close(a, b, **kw):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.isfinite(a).all(), a
    torch.testing.assert_close(a, b, **kw)


@SETTINGS
@given(bs=rows, c=classes, scale=scales, seed=seeds)
@example(bs=1, c=10, scale=1e3, seed=0)
@example(bs=1, c=1, scale=1., seed=0)
def test_logsumexp_and_log_softmax(bs, c, scale, seed):
    x, _ = logits(bs, c, scale, seed)
    tol = dict(rtol=1e-5, atol=1e-5 * max(scale, 1.))
    assert_close(nb_03.logsumexp(x), torch.logsumexp(x, -1), **tol)
    assert_close(nb_03.log_softmax(x), F.log_softmax(x, -1), **tol)


@SETTINGS
@given(bs=rows, c=classes, scale=scales, seed=seeds)
@example(bs=1, c=10, scale=1e30, seed=1)
def test_cross_entropy_and_nll(bs, c, scale, seed):
    x, y = logits(bs, c, scale, seed, torch.float64)
    tol = dict(rtol=1e-9, atol=1e-9 * max(scale, 1.))
    assert_close(nb_03.cross_entropy(x, y), F.cross_entropy(x, y), **tol)
    lsm = F.log_softmax(x, -1)
    assert_close(nb_03.nll(lsm, y), F.nll_loss(lsm, y), **tol)


def test_cross_entropy_gradient_matches_torch():
    x, y = logits(7, 5, 3., seed=3, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    nb_03.cross_entropy(x1, y).backward()
    F.cross_entropy(x2, y).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_naive_form_overflows_where_the_stable_one_does_not():
    x = torch.tensor([[1000., 0., -1000.]])
    naive = (x.exp() / x.exp().sum(-1, keepdim=True)).log()
    assert not torch.isfinite(naive).all()                       # so the test can tell the two apart
    assert_close(nb_03.log_softmax(x), torch.tensor([[0., -1000., -2000.]]))


def test_accuracy():
    out = torch.tensor([[0., 1.], [3., 2.], [5., 6.], [1., 0.]])
    assert nb_03.accuracy(out, torch.tensor([1, 0, 0, 0])).item() == pytest.approx(0.75)
    assert nb_03.accuracy(out[:1], torch.tensor([0])).item() == 0.
    x, y = logits(50, 10, 1., seed=5)
    assert nb_03.accuracy(x, y).item() == pytest.approx((x.argmax(1) == y).double().mean().item())


@pytest.mark.parametrize('f', [nb_03.nll, nb_03.cross_entropy, nb_03.accuracy])
@pytest.mark.parametrize('inp, targ', [((5, 3), (4,)), ((5, 3), (5, 1)), ((5,), (5,))])
def test_shape_errors_name_the_shapes(f, inp, targ):
    with pytest.raises(ValueError, match=r'got input \(' + ', '.join(map(str, inp))):
        f(torch.zeros(inp), torch.zeros(targ, dtype=torch.long))
