"""FID, KID and the matrix square root of `exp.nb_11`, against scipy and direct computations."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from exp import nb_11

pytestmark = pytest.mark.nb11


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, 2 * d, generator=g, dtype=torch.float64)
    return m @ m.T / (2 * d)                              # (d, d): symmetric positive definite


@pytest.mark.parametrize('d', [1, 2, 7, 64])
@pytest.mark.parametrize('seed', range(3))
def test_sqrtm_matches_scipy(d, seed):
    a = _spd(d, seed)
    ours = nb_11.sqrtm(a)
    ref = torch.from_numpy(np.real(scipy.linalg.sqrtm(a.numpy())))
    assert torch.allclose(ours, ref, atol=1e-9)
    assert torch.allclose(ours @ ours, a, atol=1e-10) and torch.allclose(ours, ours.T)


def test_sqrtm_of_a_singular_matrix():
    v = torch.randn(5, 2, dtype=torch.float64)
    a = v @ v.T                                           # rank 2: three eigenvalues ~0
    s = nb_11.sqrtm(a)
    assert not s.isnan().any() and torch.allclose(s @ s, a, atol=1e-8)


def test_sqrtm_rejects_bad_input():
    with pytest.raises(ValueError, match='symmetric'):
        nb_11.sqrtm(torch.tensor([[1., 2.], [0., 1.]]))
    with pytest.raises(ValueError, match='square'):
        nb_11.sqrtm(torch.ones(2, 3))


@pytest.mark.parametrize('seed', range(3))
def test_newton_schulz_matches_scipy_on_a_product(seed):
    a, b = _spd(10, seed), _spd(10, seed + 10)
    ref = torch.from_numpy(np.real(scipy.linalg.sqrtm((a @ b).numpy())))
    assert torch.allclose(nb_11.sqrtm_newton_schulz(a @ b), ref, atol=1e-8)
    s = nb_11.sqrtm(a)
    assert torch.isclose(nb_11.sqrtm(s @ b @ s).trace(), ref.trace(), atol=1e-9)


def _feats(n, d, seed, scale=1., shift=0.):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g) + shift


def test_fid_matches_the_scipy_formula():
    a, b = _feats(300, 12, 0), _feats(200, 12, 1, 0.7, 0.4)
    ma, mb = a.double().mean(0), b.double().mean(0)
    ca, cb = np.cov(a.double().numpy().T), np.cov(b.double().numpy().T)
    ref = (float(((ma - mb) ** 2).sum()) + np.trace(ca) + np.trace(cb)
           - 2 * np.trace(np.real(scipy.linalg.sqrtm(ca @ cb))))
    assert nb_11.fid(a, b) == pytest.approx(ref, abs=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    a, b = _feats(500, 32, 0), _feats(400, 32, 1, 1.3)
    assert abs(nb_11.fid(a, a)) < 1e-9
    assert nb_11.fid(a, b) == pytest.approx(nb_11.fid(b, a), abs=1e-9)
    assert nb_11.fid(a, b) > 0.1


def test_a_shift_adds_its_squared_length():
    a = _feats(100, 5, 0)
    v = torch.tensor([0.5, -1., 0., 2., 0.1])
    assert nb_11.fid(a, a + v) == pytest.approx(float((v ** 2).sum()), abs=1e-6)


def test_fid_and_kid_reject_bad_features():
    a = _feats(10, 4, 0)
    for f in (nb_11.fid, nb_11.kid):
        with pytest.raises(ValueError, match=r'\(n, d\)'): f(a[0], a)
        with pytest.raises(ValueError, match=r'\(n, d\)'): f(a, a[:1])
    with pytest.raises(ValueError, match='same d'): nb_11.fid(a, a[:, :3])


def _mmd2_loops(x, y):
    k = lambda u, v: (float(u @ v) / len(u) + 1) ** 3
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize('seed', range(3))
def test_kid_matches_a_direct_computation(seed):
    x, y = _feats(8, 3, seed).double(), _feats(11, 3, seed + 5, 1.5, 0.3).double()
    assert nb_11.kid(x, y) == pytest.approx(_mmd2_loops(x, y), abs=1e-12)
    assert nb_11.kid(x, y) == pytest.approx(nb_11.kid(y, x), abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    a, b, c = _feats(1000, 8, 0), _feats(1000, 8, 1), _feats(1000, 8, 2, 1.2, 0.3)
    same, diff = nb_11.kid(a, b), nb_11.kid(a, c)
    assert abs(same) < 0.02 and diff > 10 * abs(same)


def test_kid_on_subsets_is_the_mean_of_subset_estimates():
    a, b = _feats(300, 4, 0), _feats(300, 4, 1, 1.0, 0.5)
    full = nb_11.kid(a, b, subset_size=1000)
    sub = nb_11.kid(a, b, n_subsets=20, subset_size=100, seed=0)
    assert sub == nb_11.kid(a, b, n_subsets=20, subset_size=100, seed=0)   # seeded
    assert sub == pytest.approx(full, rel=0.3)


def test_gaussian_blur():
    x = torch.rand(3, 784)
    k = torch.exp(-torch.arange(-3., 4.) ** 2 / 2); k = k / k.sum()
    full = F.conv2d(F.pad(x.view(3, 1, 28, 28), (3, 3, 3, 3), mode='reflect'),
                    (k[:, None] * k[None])[None, None]).view(3, 784)
    assert torch.allclose(nb_11.gaussian_blur(x, 1.), full, atol=1e-6)
    assert torch.equal(nb_11.gaussian_blur(x, 0.), x)
    const = torch.full((2, 784), 0.4)
    assert torch.allclose(nb_11.gaussian_blur(const, 3.), const, atol=1e-6)
