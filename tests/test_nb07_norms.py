"""`LayerNorm` and `GroupNorm` of `exp.nb_07` against torch's, and the course-v3 std-for-var slip they must catch."""
import pytest
import torch
from torch import nn

from exp import nb_07

pytestmark = pytest.mark.nb07


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def copy_random_affine(ours, theirs, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad(): theirs.weight.uniform_(0.5, 1.5); theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())


@pytest.mark.parametrize('normalized_shape', [5, (5,), (4, 5), (3, 4, 5)])
@pytest.mark.parametrize('scale', [0.1, 1.0, 10.0])
def test_layernorm_matches_torch(normalized_shape, scale):
    ours, theirs = nb_07.LayerNorm(normalized_shape), nn.LayerNorm(normalized_shape)
    copy_random_affine(ours, theirs)
    x = torch.randn(6, 3, 4, 5) * scale + 2
    close(ours(x), theirs(x))
    assert [n for n, _ in ours.named_parameters()] == ['weight', 'bias']


def test_layernorm_gradients_match_torch():
    ours, theirs = nb_07.LayerNorm((4, 5)), nn.LayerNorm((4, 5))
    copy_random_affine(ours, theirs)
    x = (torch.randn(3, 4, 5) * 4).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    dout = torch.randn(3, 4, 5)
    ours(x).backward(dout); theirs(x2).backward(dout)
    close(x.grad, x2.grad); close(ours.weight.grad, theirs.weight.grad)


class LayerNormStd(nb_07.LayerNorm):
    "course-v3's slip (PR #363): sqrt(std + eps) where sqrt(var + eps) was meant."
    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        m, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
        return (x - m) / (std + self.eps).sqrt() * self.weight + self.bias


class LayerNormUnbiased(nb_07.LayerNorm):
    "A subtler slip: the unbiased variance (torch's LayerNorm uses the biased one)."
    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        m, var = x.mean(dims, keepdim=True), x.var(dims, keepdim=True)
        return (x - m) / (var + self.eps).sqrt() * self.weight + self.bias


@pytest.mark.parametrize('slip', [LayerNormStd, LayerNormUnbiased])
def test_the_layernorm_comparison_catches_slips(slip):
    "The same comparison as `test_layernorm_matches_torch` fails for a wrong formula."
    bad, theirs = slip((4, 5)), nn.LayerNorm((4, 5))
    copy_random_affine(bad, theirs)
    x = torch.randn(6, 3, 4, 5) * 10
    with pytest.raises(AssertionError):
        close(bad(x), theirs(x))


def test_layernorm_bad_shape():
    with pytest.raises(ValueError, match=r'\(4, 5\)'):
        nb_07.LayerNorm((4, 5))(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r'\(4, 5\)'):
        nb_07.LayerNorm((4, 5))(torch.zeros(5))


@pytest.mark.parametrize('groups', [1, 2, 3, 6])
@pytest.mark.parametrize('shape', [(4, 6), (4, 6, 5), (4, 6, 3, 2)])
def test_groupnorm_matches_torch(groups, shape):
    if shape == (4, 6) and groups == 6:
        pytest.skip("one value per group: both give beta, torch's only to about 1e-4 (E[x^2] - E[x]^2)")
    ours, theirs = nb_07.GroupNorm(groups, 6), nn.GroupNorm(groups, 6)
    copy_random_affine(ours, theirs)
    x = torch.randn(shape) * 5 - 1
    close(ours(x), theirs(x))


def test_groupnorm_special_cases():
    x = torch.randn(4, 6, 5, 5) * 3
    close(nb_07.GroupNorm(6, 6)(x), nn.InstanceNorm2d(6)(x))
    close(nb_07.GroupNorm(1, 6)(x), nb_07.LayerNorm((6, 5, 5))(x))


def test_groupnorm_is_independent_of_the_batch():
    gn = nb_07.GroupNorm(2, 6)
    x = torch.randn(5, 6, 3, 3)
    close(gn(x)[2:3], gn(x[2:3]))


def test_groupnorm_bad_arguments():
    with pytest.raises(ValueError, match='4 equal groups'):
        nb_07.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r'\(n, 6\)'):
        nb_07.GroupNorm(2, 6)(torch.zeros(2, 4, 3, 3))
