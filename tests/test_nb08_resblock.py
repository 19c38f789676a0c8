"""`ResBlock` and `resnet` of `exp.nb_08`: shapes for every stride and channel change, errors."""
import pytest
import torch
from torch import nn

from exp import nb_08

pytestmark = pytest.mark.nb08


@pytest.mark.parametrize('ni,nf', [(4, 4), (4, 8), (8, 4), (1, 6)])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [28, 7, 2, 1])
def test_shapes_for_every_stride_and_channel_change(ni, nf, stride, size):
    torch.manual_seed(0)
    block = nb_08.ResBlock(ni, nf, stride=stride)
    out = block(torch.randn(3, ni, size, size))
    side = -(-size // stride)                                    # ceil: 7 -> 4, as the conv
    assert out.shape == (3, nf, side, side)
    assert isinstance(block.idconv, nn.Identity) == (ni == nf)   # 1x1 conv iff channels change
    assert isinstance(block.pool, nn.Identity) == (stride == 1)  # pool iff the grid shrinks


def test_non_square_and_odd_grids():
    out = nb_08.ResBlock(2, 3, stride=2)(torch.randn(2, 2, 9, 6))
    assert out.shape == (2, 3, 5, 3)


def test_fresh_block_is_the_identity_then_relu():
    "With zero_bn=True the zero last batch-norm scale makes a new block with ni == nf compute relu(x)."
    torch.manual_seed(0)
    block = nb_08.ResBlock(5, 5, zero_bn=True)
    x = torch.randn(4, 5, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_zero_bn_is_off_by_default():
    "By default the last batch-norm scale starts at one: a fresh block already uses its main path."
    torch.manual_seed(0)
    block = nb_08.ResBlock(5, 5)
    torch.testing.assert_close(block.convs[-1][1].weight, torch.ones(5))
    x = torch.randn(4, 5, 6, 6)
    assert not torch.allclose(block(x), torch.relu(x))


def test_residual_path_is_used_once_trained_weights_are_nonzero():
    torch.manual_seed(0)
    block = nb_08.ResBlock(5, 5, zero_bn=True)
    nn.init.ones_(block.convs[-1][1].weight)
    x = torch.randn(4, 5, 6, 6)
    assert not torch.allclose(block(x), torch.relu(x))


def test_gradients_reach_both_paths():
    torch.manual_seed(0)
    block = nb_08.ResBlock(3, 6, stride=2)
    nn.init.ones_(block.convs[-1][1].weight)
    block(torch.randn(4, 3, 8, 8)).sum().backward()
    assert block.convs[0][0].weight.grad.abs().sum() > 0
    assert block.idconv[0].weight.grad.abs().sum() > 0


def test_act_none_and_other_activations():
    x = torch.randn(2, 3, 4, 4)
    assert (nb_08.ResBlock(3, 3, act=None)(x) < 0).any()         # no final relu
    out = nb_08.ResBlock(3, 3, act=nn.Tanh)(x)
    assert out.abs().max() <= 1


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='stride must be 1 or 2'): nb_08.ResBlock(3, 3, stride=3)
    with pytest.raises(ValueError, match=r'expected a \(bs, 3, h, w\) batch, got \(2, 4, 8, 8\)'):
        nb_08.ResBlock(3, 3)(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r'\(2, 784\)'): nb_08.ResBlock(1, 3)(torch.randn(2, 784))
    with pytest.raises(ValueError, match='ks must be odd'): nb_08.conv_bn(3, 3, ks=4)


def test_resnet_shapes_and_widths():
    torch.manual_seed(0)
    model = nb_08.resnet((4, 8, 16), n_in=1, n_out=7)
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 7)
    blocks = [m for m in model if isinstance(m, nb_08.ResBlock)]
    assert [b.convs[-1][0].out_channels for b in blocks] == [4, 8, 16]
    assert [b.convs[-1][0].stride for b in blocks] == [(1, 1), (2, 2), (2, 2)]
    assert model(torch.randn(5, 1, 13, 17)).shape == (5, 7)     # global pooling: any grid size
    with pytest.raises(ValueError, match='at least two widths'): nb_08.resnet((8,))


def test_resnet_learns_a_tiny_batch():
    "Twenty Adam steps drive the loss on 32 fixed images well down: the blocks train end to end."
    torch.manual_seed(0)
    model = nb_08.resnet((4, 8, 16))
    x, y = torch.randn(32, 1, 12, 12), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    loss0 = None
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        loss0 = loss0 or loss.item()
        loss.backward(); opt.step(); opt.zero_grad()
    assert loss.item() < loss0 / 3
