"""Every hand-written backward of `exp.nb_02` against torch autograd and against central differences,
in float64, over random shapes (batch 1 and odd sizes included)."""
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from exp import nb_02

pytestmark = pytest.mark.nb02

dims = st.integers(1, 9)
seeds = st.integers(0, 2**31 - 1)
SETTINGS = settings(deadline=None, max_examples=25)


def randn(*shape, seed_gen):
    "Random float64 tensor drawn from the generator `seed_gen`."
    return torch.randn(*shape, generator=seed_gen, dtype=torch.float64)


def away_from_zero(t, margin=1e-3):
    "`t` with entries closer than `margin` to 0 moved to 0.5, so finite differences never straddle the ReLU kink."
    return torch.where(t.abs() < margin, torch.full_like(t, 0.5), t)


def assert_close(a, b):
    "Float64 comparison, much tighter than `test_near`."
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(bs=dims, two_d=st.booleans(), seed=seeds)
@example(bs=1, two_d=True, seed=0)
@example(bs=1, two_d=False, seed=0)
def test_mse_grad(bs, two_d, seed):
    g = torch.Generator().manual_seed(seed)
    out = randn(*((bs, 1) if two_d else (bs,)), seed_gen=g).requires_grad_()
    targ = randn(bs, seed_gen=g)
    nb_02.mse(out, targ).backward()
    nb_02.mse_grad(out, targ)
    assert out.g.shape == out.shape and out.g.dtype == torch.float64
    assert_close(out.g, out.grad)
    nb_02.check_grad(lambda t: nb_02.mse(t, targ), out, out.g)


@SETTINGS
@given(bs=dims, n=dims, seed=seeds)
@example(bs=1, n=1, seed=0)
def test_relu_grad(bs, n, seed):
    g = torch.Generator().manual_seed(seed)
    inp = away_from_zero(randn(bs, n, seed_gen=g)).requires_grad_()
    out = nb_02.relu(inp)
    out.g = randn(bs, n, seed_gen=g)
    torch.relu(inp).backward(out.g)
    nb_02.relu_grad(inp, out)
    assert inp.g.dtype == torch.float64
    assert_close(inp.g, inp.grad)
    nb_02.check_grad(lambda t: (nb_02.relu(t) * out.g).sum(), inp, inp.g)


@SETTINGS
@given(bs=dims, n_in=dims, n_out=dims, seed=seeds)
@example(bs=1, n_in=1, n_out=1, seed=0)
@example(bs=1, n_in=7, n_out=3, seed=1)
def test_lin_grad(bs, n_in, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    x, w, b = (randn(*s, seed_gen=g).requires_grad_() for s in ((bs, n_in), (n_in, n_out), (n_out,)))
    out = nb_02.lin(x, w, b)
    out.g = randn(bs, n_out, seed_gen=g)   # dL/dout for L = (out * out.g).sum()
    out.backward(out.g)
    nb_02.lin_grad(x, out, w, b)
    for t in (x, w, b): assert_close(t.g, t.grad)
    nb_02.check_grad(lambda t: (nb_02.lin(t, w, b) * out.g).sum(), x, x.g)
    nb_02.check_grad(lambda t: (nb_02.lin(x, t, b) * out.g).sum(), w, w.g)
    nb_02.check_grad(lambda t: (nb_02.lin(x, w, t) * out.g).sum(), b, b.g)


def net(bs, n_in, nh, g):
    "Random float64 input, targets and weights for an `n_in -> nh -> 1` net."
    x, y = randn(bs, n_in, seed_gen=g), randn(bs, seed_gen=g)
    w1, b1 = randn(n_in, nh, seed_gen=g), randn(nh, seed_gen=g)
    w2, b2 = randn(nh, 1, seed_gen=g), randn(1, seed_gen=g)
    return x, y, [w1, b1, w2, b2]


@SETTINGS
@given(bs=dims, n_in=dims, nh=dims, seed=seeds)
@example(bs=1, n_in=1, nh=1, seed=0)
def test_model_grads(bs, n_in, nh, seed):
    x, y, params = net(bs, n_in, nh, torch.Generator().manual_seed(seed))
    model = nb_02.Model(*params)
    loss = model(x, y)
    model.backward()
    # autograd on copies
    xr, pr = x.clone().requires_grad_(), [p.clone().requires_grad_() for p in params]
    ref = nb_02.mse(nb_02.lin(torch.relu(nb_02.lin(xr, pr[0], pr[1])), pr[2], pr[3]), y)
    ref.backward()
    assert_close(loss, ref.detach())
    for mine, t in zip([x] + params, [xr] + pr): assert_close(mine.g, t.grad)
    # central differences, one tensor at a time
    def loss_with(i, t):
        args = [x] + params
        args[i] = t
        return nb_02.mse(nb_02.lin(nb_02.relu(nb_02.lin(args[0], args[1], args[2])), args[3], args[4]), y)
    for i, t in enumerate([x] + params): nb_02.check_grad(lambda v: loss_with(i, v), t, t.g)


@SETTINGS
@given(bs=dims, seed=seeds)
@example(bs=1, seed=0)
def test_module_layers_match_functions(bs, seed):
    "The exported `Lin`, `Relu`, `Mse` layers give the same `.g` as the functions they wrap."
    g = torch.Generator().manual_seed(seed)
    x, w, b = randn(bs, 5, seed_gen=g), randn(5, 3, seed_gen=g), randn(3, seed_gen=g)
    layer = nb_02.Lin(w, b)
    out = layer(x)
    out.g = randn(bs, 3, seed_gen=g)
    layer.backward()
    got = [t.g.clone() for t in (x, w, b)]
    nb_02.lin_grad(x, out, w, b)
    for a, t in zip(got, (x, w, b)): assert_close(a, t.g)
    r = nb_02.Relu()
    rx = away_from_zero(x)
    ro = r(rx)
    ro.g = randn(bs, 5, seed_gen=g)
    r.backward()
    assert_close(rx.g, ro.g * (rx > 0))
    o, targ = randn(bs, 1, seed_gen=g), randn(bs, seed_gen=g)
    loss_layer = nb_02.Mse()
    assert_close(loss_layer(o, targ), nb_02.mse(o, targ))
    loss_layer.backward()
    assert_close(o.g, 2 * (o.squeeze(-1) - targ).unsqueeze(-1) / bs)
