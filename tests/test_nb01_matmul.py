"""The matmul ladder of nbs/01_matmul.ipynb against PyTorch's `@`, and its shape errors."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from exp import nb_01

pytestmark = pytest.mark.nb01

LADDER = [nb_01.matmul_loops, nb_01.matmul_elementwise, nb_01.matmul_broadcast, nb_01.matmul_einsum]


@settings(deadline=None, max_examples=25)
@given(m=st.integers(0, 5), n=st.integers(0, 6), p=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_ladder_matches_at(m, n, p, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(m, n, generator=g), torch.randn(n, p, generator=g)
    for f in LADDER:
        c = f(a, b)
        assert c.shape == (m, p), f.__name__
        assert nb_01.near(c, a @ b), f.__name__


@pytest.mark.parametrize('f', LADDER)
def test_lesson_shape(f):
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 784, generator=g), torch.randn(784, 10, generator=g)
    nb_01.test_near(f(a, b), a @ b)


@pytest.mark.parametrize('f', LADDER)
def test_known_product(f):
    a = torch.tensor([[1., 2.], [3., 4.]])
    b = torch.tensor([[5., 6., 7.], [8., 9., 10.]])
    nb_01.test_eq(f(a, b), torch.tensor([[21., 24., 27.], [47., 54., 61.]]))


@pytest.mark.parametrize('f', LADDER)
@pytest.mark.parametrize('sa, sb', [((5, 784), (10, 784)), ((2, 3), (2, 3)), ((3,), (3, 2)), ((2, 3), (3,)),
                                    ((2, 2, 3), (3, 4))])
def test_shape_mismatch_names_both_shapes(f, sa, sb):
    with pytest.raises(ValueError) as e:
        f(torch.ones(sa), torch.ones(sb))
    assert str(tuple(sa)) in str(e.value) and str(tuple(sb)) in str(e.value)


@pytest.mark.parametrize('f', LADDER)
def test_not_tensors(f):
    with pytest.raises(TypeError, match='two tensors'):
        f([[1., 2.]], torch.ones(2, 1))


@pytest.mark.parametrize('f', LADDER)
def test_ladder_has_one_line_docstring(f):
    assert f.__doc__ and '\n' not in f.__doc__.strip()
