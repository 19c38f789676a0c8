"""Attention of `exp.nb_13` against torch: `attention` against `F.scaled_dot_product_attention`
(no mask, causal, boolean and float masks, heads, L != S), `MultiHeadAttention` against
`nn.MultiheadAttention` with the weights copied across, and the `SelfAttention2d` block."""
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp import nb_12, nb_13

pytestmark = pytest.mark.nb13


def _qkv(seed, *shape, s=None):
    g = torch.Generator().manual_seed(seed)
    *batch, l, e = shape
    s = l if s is None else s
    return (torch.randn(*batch, l, e, generator=g), torch.randn(*batch, s, e, generator=g),
            torch.randn(*batch, s, e + 3, generator=g))          # values of another width


@pytest.mark.parametrize('seed', range(3))
def test_attention_matches_torch_without_a_mask(seed):
    q, k, v = _qkv(seed, 2, 3, 7, 8)
    out = nb_13.attention(q, k, v)
    assert out.shape == (2, 3, 7, 11)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize('l,s', [(7, 7), (4, 9)])
def test_attention_causal_mask_matches_is_causal(l, s):
    q, k, v = _qkv(0, 2, l, 8, s=s)
    ours = nb_13.attention(q, k, v, nb_13.causal_mask(l, s))
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(ours[:, 0], v[:, 0])              # the first query sees one key


def test_causal_mask_is_the_lower_triangle():
    assert nb_13.causal_mask(3).tolist() == [[True, False, False], [True, True, False],
                                             [True, True, True]]
    assert nb_13.causal_mask(2, 4).shape == (2, 4) and nb_13.causal_mask(2).dtype == torch.bool


@pytest.mark.parametrize('seed', range(3))
def test_attention_boolean_and_float_masks_match_torch(seed):
    q, k, v = _qkv(seed, 3, 2, 6, 4)
    g = torch.Generator().manual_seed(seed + 10)
    mask = torch.rand(3, 1, 6, 6, generator=g) < 0.4             # broadcast over the heads
    mask[..., 0] = True
    torch.testing.assert_close(nb_13.attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    bias = torch.randn(6, 6, generator=g)
    torch.testing.assert_close(nb_13.attention(q, k, v, bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    # True = may attend: a key that is masked for every query has no influence at all
    mask = torch.ones(6, 6, dtype=torch.bool); mask[:, 2] = False
    v2 = v.clone(); v2[..., 2, :] += 100.
    torch.testing.assert_close(nb_13.attention(q, k, v, mask), nb_13.attention(q, k, v2, mask))


def test_attention_errors_name_the_problem():
    q, k, v = _qkv(0, 2, 5, 4)
    with pytest.raises(ValueError, match=r'k \(\.\.\., S, E\)'):
        nb_13.attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r'v \(\.\.\., S, Ev\)'):
        nb_13.attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match="don't broadcast"):
        nb_13.attention(torch.randn(3, 5, 4), k, v)
    with pytest.raises(ValueError, match='must broadcast'):
        nb_13.attention(q, k, v, torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='bool tensor'):
        nb_13.attention(q, k, v, torch.ones(5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match='tensors'):
        nb_13.attention(q[0, 0], k, v)


def _torch_copy(ours):
    theirs = nn.MultiheadAttention(ours.d, ours.n_heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.in_proj.weight)
        theirs.in_proj_bias.copy_(ours.in_proj.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return theirs


@pytest.mark.parametrize('n_heads', [1, 2, 4])
def test_multi_head_matches_nn_multihead_attention(n_heads):
    torch.manual_seed(n_heads)
    ours = nb_13.MultiHeadAttention(16, n_heads)
    theirs = _torch_copy(ours)
    x = torch.randn(3, 10, 16)
    mask = torch.rand(3, 10, 10) < 0.5
    mask[..., 0] = True
    cases = [(None, None), (nb_13.causal_mask(10), ~nb_13.causal_mask(10)),   # torch: True = not
             (mask[:, None], ~mask.repeat_interleave(n_heads, 0))]
    with torch.no_grad():
        for m, m_torch in cases:
            want = theirs(x, x, x, attn_mask=m_torch, need_weights=False)[0]
            torch.testing.assert_close(ours(x, m), want)


def test_multi_head_errors():
    with pytest.raises(ValueError, match='divide by n_heads'):
        nb_13.MultiHeadAttention(16, 3)
    with pytest.raises(ValueError, match=r'tokens \(bs, L, 16\)'):
        nb_13.MultiHeadAttention(16, 2)(torch.randn(2, 10, 8))


def test_self_attention_2d_shape_identity_and_residual():
    torch.manual_seed(0)
    sa = nb_13.SelfAttention2d(16, n_heads=2)
    x = torch.randn(2, 16, 5, 6)
    assert sa(x).shape == x.shape
    torch.testing.assert_close(sa(x), x, rtol=0, atol=0)         # zero projection: the identity
    with torch.no_grad():
        nn.init.normal_(sa.mha.out_proj.weight, std=0.1)
        out = sa(x)
        tokens = sa.norm(x).flatten(2).transpose(1, 2)             # (2, 30, 16)
        delta = sa.mha(tokens).transpose(1, 2).reshape(x.shape)
        torch.testing.assert_close(out, x + delta)
        assert (out - x).abs().mean() > 1e-3
        perm = torch.randperm(30)                                  # positions shuffled
        xs = x.flatten(2)[:, :, perm].view_as(x)
        torch.testing.assert_close(sa(xs).flatten(2), out.flatten(2)[:, :, perm])


def test_self_attention_2d_learns_from_its_projection_first():
    torch.manual_seed(0)
    sa = nb_13.SelfAttention2d(8, n_heads=2)
    sa(torch.randn(2, 8, 4, 4)).pow(2).mean().backward()
    assert sa.mha.in_proj.weight.grad.abs().max() == 0
    assert sa.mha.out_proj.weight.grad.abs().max() > 0


@pytest.mark.parametrize('levels,n_blocks', [((), 0), ((2,), 4), ((1, 2), 7)])
def test_unet_with_attention_levels(levels, n_blocks):
    torch.manual_seed(0)
    u = nb_12.UNet((8, 16, 32), 1, attn=partial(nb_13.SelfAttention2d, n_heads=2),
                   attn_levels=levels)
    assert sum(isinstance(m, nb_13.SelfAttention2d) for m in u.modules()) == n_blocks
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 700])
    torch.manual_seed(1)
    plain = nb_12.UNet((8, 16, 32), 1)
    u.load_state_dict(plain.state_dict(), strict=False)           # zero projections: same output
    with torch.no_grad():
        torch.testing.assert_close(u(x, t), plain(x, t))
        assert u(x, t).shape == x.shape
