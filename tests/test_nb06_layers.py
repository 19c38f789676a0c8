"GeneralRelu, init_weights, conv and cnn_model of exp.nb_06."
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from exp import nb_06

pytestmark = pytest.mark.nb06

maybe = lambda s: st.one_of(st.none(), s)


@settings(deadline=None, max_examples=100)
@given(maybe(st.floats(0, 0.5)), maybe(st.floats(-1, 1)), maybe(st.floats(-1, 5)))
def test_general_relu_is_its_formula(leak, sub, maxv):
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    y = torch.where(x >= 0, x, (leak or 0.) * x)
    if sub is not None: y = y - sub
    if maxv is not None: y = y.clamp(max=maxv)
    torch.testing.assert_close(nb_06.GeneralRelu(leak, sub, maxv)(x), y)


def test_general_relu_repr_and_flag():
    assert 'leak=0.1, sub=0.4' in repr(nb_06.GeneralRelu(0.1, 0.4))
    assert nb_06.is_activation(nb_06.GeneralRelu()) and nb_06.is_activation(nn.ReLU())
    assert not nb_06.is_activation(nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize('leak', [0., 0.1, 0.5])
@pytest.mark.parametrize('layer', [nn.Conv2d(32, 128, 3), nn.Conv1d(64, 256, 5),
                                   nn.Linear(300, 200)])
def test_init_weights_is_kaiming(layer, leak):
    torch.manual_seed(0)
    nb_06.init_weights(layer, leak)
    fan_in = layer.weight[0].numel()
    std = math.sqrt(2 / ((1 + leak ** 2) * fan_in))
    assert layer.weight.std().item() == pytest.approx(std, rel=0.03)
    assert abs(layer.weight.mean().item()) < 0.05 * std
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_init_weights_keeps_the_scale_through_a_deep_relu_stack():
    "The point of Kaiming init: 20 ReLU layers later the second moment is still of order 1."
    torch.manual_seed(0)
    layers = [nn.Linear(256, 256) for _ in range(20)]
    for l in layers: nb_06.init_weights(l)
    x = torch.randn(512, 256)
    for l in layers: x = torch.relu(l(x))
    assert 0.3 < x.pow(2).mean().item() < 3


def test_init_weights_leaves_other_modules_alone():
    bn = nn.BatchNorm2d(4)
    nb_06.init_weights(bn)
    assert torch.equal(bn.weight, torch.ones(4))


def test_cnn_model_goes_down_to_1x1():
    model = nb_06.cnn_model()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == \
        [(1, 8, (2, 2)), (8, 16, (2, 2)), (16, 32, (2, 2)), (32, 64, (2, 2)), (64, 10, (2, 2))]
    assert not isinstance(model[-2][-1], nn.ReLU)       # no activation on the scores


def test_conv_block_options():
    b = nb_06.conv(3, 6, ks=5, stride=1, act=None)
    assert len(b) == 1 and b[0].padding == (2, 2) and b[0].bias is not None
    b = nb_06.conv(3, 6, norm=nn.BatchNorm2d, act=lambda: nb_06.GeneralRelu(0.1))
    assert [type(m) for m in b] == [nn.Conv2d, nn.BatchNorm2d, nb_06.GeneralRelu]
    assert b[0].bias is None
    model = nb_06.cnn_model(nfs=(1, 4, 8), act=nn.ReLU, norm=nn.BatchNorm2d)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match='at least 2'): nb_06.cnn_model(nfs=(1,))


def test_lsuv_init_gives_unit_std_zero_mean_after_each_activation():
    torch.manual_seed(0)
    model = nb_06.cnn_model(act=lambda: nb_06.GeneralRelu(0.1, 0.4))
    xb = torch.randn(64, 1, 28, 28)
    assert nb_06.lsuv_init(model, xb) is model
    acts = [m for m in model.modules() if nb_06.is_activation(m)]
    outs = []
    with nb_06.Hooks(acts, lambda h, m, i, o: outs.append(o)), torch.no_grad(): model(xb)
    for o in outs:
        assert abs(o.mean().item()) < 1e-2 and abs(o.std().item() - 1) < 1e-2


def test_lsuv_init_needs_a_layer_before_an_activation():
    with pytest.raises(ValueError, match='no conv or linear layer'):
        nb_06.lsuv_init(nn.Sequential(nn.ReLU(), nn.Linear(3, 3)), torch.zeros(2, 3))
