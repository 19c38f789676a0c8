"""`BatchNorm` of `exp.nb_07` against `nn.BatchNorm1d/2d`: both modes, buffers, errors."""
import pytest
import torch
from torch import nn

from exp import nb_07

pytestmark = pytest.mark.nb07


def paired(nf, torch_cls, mom=0.1, eps=1e-5, seed=0):
    "Ours and torch's, with the same random scale and shift."
    torch.manual_seed(seed)
    theirs = torch_cls(nf, momentum=mom, eps=eps)
    with torch.no_grad(): theirs.weight.uniform_(0.5, 1.5); theirs.bias.normal_()
    ours = nb_07.BatchNorm(nf, mom=mom, eps=eps)
    ours.load_state_dict(theirs.state_dict(), strict=False)
    return ours, theirs


def close(a, b, rtol=1e-5, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize('shape,torch_cls', [
    ((16, 5), nn.BatchNorm1d), ((3, 5), nn.BatchNorm1d), ((8, 5, 4, 3), nn.BatchNorm2d),
    ((2, 5, 1, 2), nn.BatchNorm2d), ((6, 5, 7), nn.BatchNorm1d)])
@pytest.mark.parametrize('mom', [0.1, 0.5])
def test_matches_torch_in_training_then_eval(shape, torch_cls, mom):
    ours, theirs = paired(shape[1], torch_cls, mom=mom)
    for step in range(6):                                  # several steps: running stats accumulate
        x = torch.randn(shape) * (step + 1) + step - 2     # statistics far from (0, 1), changing
        close(ours(x), theirs(x))
        close(ours.running_mean, theirs.running_mean)
        close(ours.running_var, theirs.running_var)
    ours.eval(); theirs.eval()
    x = torch.randn(shape) * 3 + 1
    close(ours(x), theirs(x))
    before = ours.running_var.clone()
    ours(x)
    torch.testing.assert_close(ours.running_var, before, rtol=0, atol=0)   # eval leaves them alone


def test_running_var_is_unbiased():
    "4 values per channel: biased and unbiased variance differ by 4/3; torch keeps the unbiased."
    bn = nb_07.BatchNorm(3, mom=1.0)                       # mom=1: running value = last batch's
    x = torch.randn(4, 3) * 2
    bn(x)
    close(bn.running_var, x.var(0, correction=1))
    close(bn.running_mean, x.mean(0))
    assert not torch.allclose(bn.running_var, x.var(0, correction=0), rtol=1e-3)


def test_gradients_match_torch():
    ours, theirs = paired(4, nn.BatchNorm2d)
    x = torch.randn(5, 4, 3, 3, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    dout = torch.randn(5, 4, 3, 3)
    ours(x).backward(dout); theirs(x2).backward(dout)
    close(x.grad, x2.grad)
    close(ours.weight.grad, theirs.weight.grad)
    close(ours.bias.grad, theirs.bias.grad)


def test_training_normalises_each_channel():
    x = torch.randn(32, 6, 5, 5) * torch.arange(1, 7).view(1, 6, 1, 1) + 10
    y = nb_07.BatchNorm(6)(x)
    close(y.mean((0, 2, 3)), torch.zeros(6), atol=1e-5, rtol=0)
    close(y.var((0, 2, 3), correction=0), torch.ones(6), atol=1e-3, rtol=0)


def test_parameters_and_buffers():
    bn = nb_07.BatchNorm(7)
    assert [n for n, _ in bn.named_parameters()] == ['weight', 'bias']
    assert [n for n, _ in bn.named_buffers()] == ['running_mean', 'running_var']
    assert set(bn.state_dict()) == {'weight', 'bias', 'running_mean', 'running_var'}
    assert bn.double().running_var.dtype == torch.float64             # buffers follow the module
    assert 'mom=0.1' in repr(bn) and 'eps=1e-05' in repr(bn)


def test_state_dict_round_trip_with_torch():
    ours, theirs = paired(4, nn.BatchNorm2d)
    for _ in range(3): x = torch.randn(6, 4, 2, 2); ours(x); theirs(x)
    fresh = nn.BatchNorm2d(4)
    fresh.load_state_dict(ours.state_dict(), strict=False)
    fresh.eval(); ours.eval()
    x = torch.randn(2, 4, 2, 2)
    close(fresh(x), ours(x))


@pytest.mark.parametrize('shape,match', [((4, 3, 5, 5), r'\(n, 8\)'), ((8,), r'\(8,\)'),
                                         ((1, 8), 'more than one value'),
                                         ((1, 8, 1, 1), 'more than one value')])
def test_bad_input(shape, match):
    with pytest.raises(ValueError, match=match):
        nb_07.BatchNorm(8)(torch.zeros(shape))


def test_single_sample_is_fine_in_eval():
    bn = nb_07.BatchNorm(8).eval()
    assert bn(torch.zeros(1, 8)).shape == (1, 8)


def test_two_values_per_channel_give_plus_minus_one():
    "Notebook section 6: with m = 2, training-mode batch norm keeps only the order of the pair."
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(0)) * 5 + 3
    y = nb_07.BatchNorm(6)(x).detach()
    half_gap = (x[0] - x[1]).abs() / 2                        # each value's distance to the mean
    torch.testing.assert_close(y.abs(), (half_gap / (half_gap ** 2 + 1e-5).sqrt()).expand(2, 6))
    assert (y.abs() > 0.99).all()                                       # +-1 up to eps
    assert torch.equal(y[0] > 0, x[0] > x[1])


def test_smoke_bn_cnn_learns_fashion_mnist(tmp_path, monkeypatch):
    "Seeded: a small CNN with our BatchNorm, one pass over 6,000 images: > 75% on 2,000 test."
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path))   # a download lands here, not in ~/.cache
    try: x, y, xt, yt = nb_07.get_fashion_mnist()
    except FileNotFoundError as e: pytest.skip(str(e))
    m, s = x.mean(), x.std()
    x, xt = ((x[:6000] - m) / s).view(-1, 1, 28, 28), ((xt[:2000] - m) / s).view(-1, 1, 28, 28)
    y, yt = y[:6000], yt[:2000]
    torch.manual_seed(0)
    layers, ni = [], 1
    for nf in (8, 16, 32, 64):
        layers += [nn.Conv2d(ni, nf, 3, 2, 1, bias=False), nb_07.BatchNorm(nf), nn.ReLU()]
        ni = nf
    model = nn.Sequential(*layers, nn.Conv2d(ni, 10, 3, 2, 1), nn.Flatten())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for i in range(0, 6000, 64):
        loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        loss.backward(); opt.step(); opt.zero_grad()
    model.eval()
    with torch.no_grad(): acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.75, acc
