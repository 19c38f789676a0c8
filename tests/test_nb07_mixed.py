"""07's norms under CPU autocast (bfloat16 and float16): as torch's own layers behave there."""
import pytest
import torch
from torch import nn

from exp import nb_07

pytestmark = pytest.mark.nb07

DTYPES = [torch.bfloat16, torch.float16]
# (ours, torch's) built alike for a (8, 6, 7, 7) activation
PAIRS = {
    'BatchNorm': (lambda: nb_07.BatchNorm(6), lambda: nn.BatchNorm2d(6)),
    'LayerNorm': (lambda: nb_07.LayerNorm((6, 7, 7)), lambda: nn.LayerNorm((6, 7, 7))),
    'GroupNorm': (lambda: nb_07.GroupNorm(3, 6), lambda: nn.GroupNorm(3, 6)),
}


def pair(name, seed=0):
    "Ours and torch's, with the same random scale and shift."
    torch.manual_seed(seed)
    make_ours, make_theirs = PAIRS[name]
    ours, theirs = make_ours(), make_theirs()
    with torch.no_grad(): theirs.weight.uniform_(0.5, 1.5); theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict(), strict=False)   # torch's BN adds a counter
    return ours, theirs


def conv_net(norm, seed=0):
    "A conv (which autocast runs in low precision), the norm, ReLU, a linear head."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), norm, nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 7 * 7, 10))


def batch(seed):
    "A (8, 1, 14, 14) input whose conv output has a mean far from 0 (hard for low precision)."
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 14, 14, generator=g) * 2 + 3, torch.randint(0, 10, (8,), generator=g)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', list(PAIRS))
def test_forward_backward_match_torch_under_autocast(name, dtype):
    ours, theirs = pair(name)
    nets = conv_net(ours), conv_net(theirs)
    x, y = batch(1)
    outs = []
    for net in nets:
        with torch.autocast('cpu', dtype=dtype):
            h = net[0](x)
            assert h.dtype == dtype                            # autocast did lower the conv
            out = net[1](h)
            loss = nn.functional.cross_entropy(net[2:](out), y)
        loss.backward()
        outs.append(out)
    assert outs[0].dtype == outs[1].dtype == dtype             # what torch's layer returns
    torch.testing.assert_close(outs[0].float(), outs[1].float(), rtol=2e-2, atol=2e-2)
    for p_ours, p_theirs in zip(nets[0].parameters(), nets[1].parameters()):
        assert p_ours.grad is not None and torch.isfinite(p_ours.grad).all()
        assert p_ours.grad.dtype == torch.float32
        scale = p_theirs.grad.abs().max().item()
        torch.testing.assert_close(p_ours.grad, p_theirs.grad, rtol=5e-2, atol=5e-2 * scale)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', list(PAIRS))
def test_statistics_in_float32(name, dtype):
    "A large mean and a small spread: statistics in half precision would lose most of it."
    ours, theirs = pair(name)
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(8, 6, 7, 7, generator=g) * 0.05 + 20).to(dtype)
    with torch.autocast('cpu', dtype=dtype):
        got, want = ours(x), theirs(x)
    assert got.dtype == want.dtype == dtype
    err = (got.float() - want.float()).abs().max().item()
    assert err <= 2 * want.float().abs().max().item() * torch.finfo(dtype).eps, err


@pytest.mark.parametrize('dtype', DTYPES)
def test_running_stats_stay_float32_and_match_torch(dtype):
    ours, theirs = pair('BatchNorm')
    nets = conv_net(ours), conv_net(theirs)
    for step in range(5):
        x, _ = batch(10 + step)
        for net in nets:
            with torch.autocast('cpu', dtype=dtype): net(x * (step + 1))
        for buf in ('running_mean', 'running_var'):
            a, b = getattr(ours, buf), getattr(theirs, buf)
            assert a.dtype == torch.float32
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)   # same low-precision input
    for net in nets: net.eval()
    x, _ = batch(20)
    with torch.autocast('cpu', dtype=dtype):
        got, want = nets[0][:2](x), nets[1][:2](x)
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('name', list(PAIRS))
def test_float64_stays_float64(name):
    "Only half types are lifted: a float64 module and input keep float64 statistics."
    ours, theirs = (m.double() for m in pair(name))
    x = torch.randn(4, 6, 7, 7, dtype=torch.float64) * 3 + 1
    got, want = ours(x), theirs(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if name == 'BatchNorm': assert ours.running_var.dtype == torch.float64


def test_trains_under_autocast_with_gradscaler_float16():
    "A few float16 steps on CPU with torch's GradScaler: the loss falls, the stats stay float32."
    net = conv_net(nb_07.BatchNorm(6))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler('cpu')
    x, y = batch(3)
    losses = []
    for _ in range(8):
        with torch.autocast('cpu', dtype=torch.float16):
            loss = nn.functional.cross_entropy(net(x), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert net[1].running_mean.dtype == torch.float32
