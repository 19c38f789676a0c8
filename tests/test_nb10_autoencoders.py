"""The autoencoders and the VAE of `exp.nb_10`: shapes, losses against their formulas, the KL against
torch, the reparameterisation gradient against autograd, and a short training that lowers the loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from exp import nb_10

pytestmark = pytest.mark.nb10


def test_shapes_of_the_three_models():
    torch.manual_seed(0)
    x = torch.rand(5, 784)
    ae, cae, vae = nb_10.mlp_autoencoder(), nb_10.conv_autoencoder(), nb_10.VAE(nh=32, nl=6)
    assert ae.enc(x).shape == (5, 200) and ae(x).shape == (5, 784)
    assert cae.enc(x).shape == (5, 8, 7, 7) and cae(x).shape == (5, 784)
    logits, mu, lv = vae(x)
    assert logits.shape == (5, 784) and mu.shape == lv.shape == (5, 6)
    assert vae.sample(3).shape == (3, 784)
    s = vae.sample(50)
    assert s.min() >= 0 and s.max() <= 1                 # sigmoid: images in [0, 1]


def test_vae_rejects_unflattened_images():
    with pytest.raises(ValueError, match=r'\(bs, 784\)'):
        nb_10.VAE(nh=8, nl=2)(torch.rand(2, 1, 28, 28))


def test_bce_loss_is_the_per_pixel_mean_of_the_formula():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 784), torch.rand(4, 784)
    p = logits.sigmoid()
    want = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    assert torch.allclose(nb_10.bce_loss(logits, x), want, atol=1e-6)
    # a VAE's (logits, mu, lv) gives the same BCE as its logits alone
    assert torch.equal(nb_10.bce_loss((logits, None, None), x), nb_10.bce_loss(logits, x))
    with pytest.raises(ValueError, match='bce_loss'):
        nb_10.bce_loss(logits, x[:2])


@pytest.mark.parametrize('seed', range(3))
def test_kl_gauss_matches_torch(seed):
    g = torch.Generator().manual_seed(seed)
    mu1, lv1, mu2, lv2 = [torch.randn(10, generator=g, dtype=torch.float64) for _ in range(4)]
    q = torch.distributions.Normal(mu1, (0.5 * lv1).exp())
    p = torch.distributions.Normal(mu2, (0.5 * lv2).exp())
    assert torch.allclose(nb_10.kl_gauss(mu1, lv1, mu2, lv2), torch.distributions.kl_divergence(q, p))
    assert torch.allclose(nb_10.kl_gauss(mu1, lv1, mu1, lv1), torch.zeros(10, dtype=torch.float64))
    prior = torch.distributions.Normal(torch.zeros(10), torch.ones(10))
    assert torch.allclose(nb_10.kl_gauss(mu1.float(), lv1.float()),
                          torch.distributions.kl_divergence(q, prior).float(), atol=1e-6)


def test_kld_loss_is_the_mean_over_dimensions():
    mu, lv = torch.randn(3, 7), torch.randn(3, 7)
    want = (-0.5 * (1 + lv - mu ** 2 - lv.exp())).mean()
    assert torch.allclose(nb_10.kld_loss((None, mu, lv)), want, atol=1e-6)


def test_reparameterise_gradients_match_autograd_formula():
    mu, lv = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    eps = torch.randn(6)
    z = nb_10.reparameterise(mu, lv, eps)
    assert torch.allclose(z, mu + (0.5 * lv).exp() * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(6))
    assert torch.allclose(lv.grad, 0.5 * (0.5 * lv).exp().detach() * eps)


def test_reparameterise_draws_have_the_right_moments():
    torch.manual_seed(0)
    z = nb_10.reparameterise(torch.full((100_000,), -2.), torch.full((100_000,), math.log(0.25)))
    assert abs(z.mean() + 2) < 0.01 and abs(z.std() - 0.5) < 0.01


def test_func_metric_weights_batches_by_size():
    m = nb_10.FuncMetric(lambda preds, targ: (preds - targ).abs().mean())
    a, b = torch.ones(3, 2), torch.zeros(1, 2)
    m.update(a, torch.zeros(3, 2)); m.update(b, torch.zeros(1, 2))
    assert math.isclose(m.compute(), 3 / 4)               # (3 * 1 + 1 * 0) / 4, not (1 + 0) / 2


def test_evaluate_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    vae, x = nb_10.VAE(nh=16, nl=4), torch.rand(50, 784)
    fns = {'bce': nb_10.bce_loss, 'kld': nb_10.kld_loss}
    state = torch.get_rng_state()
    r1, r2 = nb_10.evaluate(vae, x, fns, bs=16), nb_10.evaluate(vae, x, fns, bs=16)
    assert r1 == r2
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        torch.manual_seed(0)
        want = F.binary_cross_entropy_with_logits(vae(x)[0], x).item()
    assert math.isclose(nb_10.evaluate(vae, x, fns, bs=50)['bce'], want, rel_tol=1e-6)
    ae = nb_10.mlp_autoencoder(nh=16, nl=4).eval()        # deterministic: batches of 16, 16, 16, 2
    with torch.no_grad(): want = nb_10.bce_loss(ae(x), x).item()
    assert math.isclose(nb_10.evaluate(ae, x, {'bce': nb_10.bce_loss}, bs=16)['bce'], want,
                        rel_tol=1e-5)


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    x = torch.rand(512, 784).round()                      # binary "images": learnable structure
    x[:, :392] = x[:, :1]                                 # half of each image copies one pixel
    model = nb_10.mlp_autoencoder(nh=64, nl=8)
    model.train()
    with torch.no_grad(): before = nb_10.bce_loss(model(x), x).item()
    nb_10.fit_autoencoder(model, (x, x[:128]), epochs=3, lr=1e-2, bs=64, quiet=True)
    model.train()
    with torch.no_grad(): after = nb_10.bce_loss(model(x), x).item()
    assert after < before - 0.1


def test_test_close():
    nb_10.test_close(torch.tensor([1., 2.]), [1., 2. + 1e-6])
    with pytest.raises(AssertionError, match='within'):
        nb_10.test_close(1., 1.1, eps=0.05)
    with pytest.raises(AssertionError):
        nb_10.test_close(torch.zeros(2), torch.zeros(3))
