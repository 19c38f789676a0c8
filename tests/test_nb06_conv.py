"conv2d, im2col and col2im of exp.nb_06 against F.conv2d, F.unfold and autograd."
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from exp import nb_06

pytestmark = pytest.mark.nb06


@st.composite
def conv_args(draw):
    "A random (x shape, w shape, with bias, stride, padding) for which the kernel fits."
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding, stride = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - 2 * padding), 10))
    w = draw(st.integers(max(1, kw - 2 * padding), 10))
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (n, c, h, w), (o, c, kh, kw), draw(st.booleans()), stride, padding


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@settings(deadline=None, max_examples=150)
@given(conv_args(), st.integers(0, 2 ** 31 - 1))
def test_conv2d_matches_torch_forward_and_grads(args, seed):
    xs, ws, bias, stride, padding = args
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
    b = torch.randn(ws[0], generator=g) if bias else None
    ours = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    refs = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    out = nb_06.conv2d(*ours, stride=stride, padding=padding)
    ref = F.conv2d(*refs, stride=stride, padding=padding)
    assert out.shape == ref.shape
    _close(out, ref)
    dout = torch.randn(ref.shape, generator=g)
    out.backward(dout)
    ref.backward(dout)
    for a, r in zip(ours, refs): _close(a.grad, r.grad)


@settings(deadline=None, max_examples=40)
@given(conv_args())
def test_conv2d_float64_is_exact_to_1e10(args):
    xs, ws, _, stride, padding = args
    x, w, b = (torch.randn(s, dtype=torch.float64) for s in (xs, ws, ws[0]))
    _close(nb_06.conv2d(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding), 1e-10)


def test_conv2d_chained_non_contiguous_input():
    "The output of conv2d is a channels-last view; the next conv2d must still be right on it."
    torch.manual_seed(0)
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    w1 = torch.randn(5, 3, 3, 3, requires_grad=True)
    w2 = torch.randn(6, 5, 3, 3, requires_grad=True)
    ours = nb_06.conv2d(nb_06.conv2d(x, w1, stride=2, padding=1).relu(), w2, padding=1)
    assert not ours.is_contiguous()
    grads = torch.autograd.grad(ours.sum(), (x, w1, w2))
    ref = F.conv2d(F.conv2d(x, w1, stride=2, padding=1).relu(), w2, padding=1)
    _close(ours, ref)
    for a, r in zip(grads, torch.autograd.grad(ref.sum(), (x, w1, w2))): _close(a, r, 1e-4)


def test_conv2d_sliced_input():
    "A strided slice of a bigger tensor (storage offset, odd strides) works without padding too."
    torch.manual_seed(1)
    big = torch.randn(3, 6, 15, 17)
    x = big[1:, 2:5, 1::2, 3:]
    w = torch.randn(2, 3, 2, 3)
    _close(nb_06.conv2d(x, w), F.conv2d(x, w))
    _close(nb_06.conv2d(x, w, stride=2, padding=1), F.conv2d(x, w, stride=2, padding=1))


@settings(deadline=None, max_examples=60)
@given(conv_args())
def test_im2col_is_unfold_with_columns_reordered(args):
    (n, c, h, w), (_, _, kh, kw), _, stride, padding = args
    x = torch.randn(n, c, h, w)
    cols = nb_06.im2col(x, kh, kw, stride, padding)                   # (n*L, kh*kw*c)
    ref = F.unfold(x, (kh, kw), padding=padding, stride=stride)         # (n, c*kh*kw, L)
    ref = ref.view(n, c, kh, kw, -1).permute(0, 4, 2, 3, 1).reshape(cols.shape)
    assert torch.equal(cols, ref)


@settings(deadline=None, max_examples=60)
@given(conv_args())
def test_col2im_is_the_adjoint_of_im2col(args):
    "<im2col(x), C> == <x, col2im(C)> for all x and C: what makes col2im the adjoint (backward)."
    xs, (_, _, kh, kw), _, stride, padding = args
    x = torch.randn(xs, dtype=torch.float64)
    cols = nb_06.im2col(x, kh, kw, stride, padding)
    C = torch.randn(cols.shape, dtype=torch.float64)
    lhs = (cols * C).sum()
    rhs = (x * nb_06.col2im(C, xs, kh, kw, stride, padding)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_im2col_gradcheck():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    for kh, kw, s, p in [(3, 3, 1, 1), (3, 2, 2, 1), (1, 1, 1, 0), (4, 4, 3, 2)]:
        assert torch.autograd.gradcheck(lambda t: nb_06.im2col(t, kh, kw, s, p), (x,))


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 3))
def test_conv_out_size_matches_torch(size, ks, stride, padding):
    if size + 2 * padding < ks: return
    x, w = torch.zeros(1, 1, size, size), torch.zeros(1, 1, ks, ks)
    out = F.conv2d(x, w, stride=stride, padding=padding)
    assert out.shape[-1] == nb_06.conv_out_size(size, ks, stride, padding)


@pytest.mark.parametrize('xs, ws, bs, words', [
    ((8, 3, 10, 10), (4, 2, 3, 3), None, ['x (8, 3, 10, 10)', 'w (4, 2, 3, 3)']),
    ((8, 3, 10), (4, 3, 3, 3), None, ['x (8, 3, 10)', 'w (4, 3, 3, 3)']),
    ((8, 3, 10, 10), (4, 3, 3), None, ['x (8, 3, 10, 10)', 'w (4, 3, 3)']),
    ((8, 3, 10, 10), (4, 3, 3, 3), (3,), ['b (3,)', 'w (4, 3, 3, 3)']),
    ((8, 3, 4, 4), (4, 3, 7, 7), None, ['7x7', '(8, 3, 4, 4)']),
])
def test_conv2d_shape_errors_name_the_shapes(xs, ws, bs, words):
    b = torch.zeros(bs) if bs else None
    with pytest.raises(ValueError) as e: nb_06.conv2d(torch.zeros(xs), torch.zeros(ws), b)
    for word in words: assert word in str(e.value)


@pytest.mark.parametrize('kw', [dict(stride=0), dict(stride=1.5), dict(padding=-1)])
def test_conv2d_bad_stride_or_padding(kw):
    with pytest.raises(ValueError, match='stride|padding'):
        nb_06.conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), **kw)


def test_col2im_checks_the_cols_shape():
    with pytest.raises(ValueError, match=r'expected cols of shape \(8, 9\).*got \(8, 8\)'):
        nb_06.col2im(torch.zeros(8, 8), (2, 1, 4, 4), 3, 3)
