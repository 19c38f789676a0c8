"""12_diffusion: the noise schedules and closed form, the U-Net, NoiseCB and EMACB, a short
training, the cached model, and the DDPM, DDIM and DPM-Solver++ samplers."""
import math

import pytest
import torch

from exp import nb_12

pytestmark = pytest.mark.nb12



def test_schedule_boundaries():
    lin, cos = nb_12.make_schedule('linear'), nb_12.make_schedule('cosine')
    assert lin.T == cos.T == 1000
    assert math.isclose(lin.betas[0].item(), 1e-4) and math.isclose(lin.betas[-1].item(), 0.02)
    assert math.isclose(lin.abar[0].item(), 1 - 1e-4)
    for s in (lin, cos):
        assert (s.abar[1:] < s.abar[:-1]).all()
        assert s.abar[0] >= 0.9999 and s.abar[-1] < 1e-4
        assert s.abar_at(torch.tensor([-1])).item() == 1.
        torch.testing.assert_close(s.snr(), s.abar / (1 - s.abar))
    assert cos.betas.max().item() == pytest.approx(0.999)
    t = torch.arange(1001, dtype=torch.float64)                   # cosine: abar = f(t) / f(0)
    f = torch.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(cos.abar[:900], (f / f[0])[1:901])  # where no beta is capped
    assert len(nb_12.linear_betas(50)) == 50 and len(nb_12.cosine_betas(50)) == 50


def test_schedule_errors():
    with pytest.raises(ValueError, match='one of'): nb_12.make_schedule('sigmoid')
    with pytest.raises(ValueError, match='in \\(0, 1\\)'):
        nb_12.NoiseSchedule(torch.tensor([.1, 1.]))
    with pytest.raises(ValueError, match='beta_min'): nb_12.linear_betas(10, 0.1, 0.01)
    s = nb_12.make_schedule('linear', T=10)
    with pytest.raises(ValueError, match="don't match"):
        nb_12.q_sample(torch.zeros(2, 1, 4, 4), torch.tensor([1]), torch.zeros(2, 1, 4, 4), s)


@pytest.mark.parametrize('name', ['linear', 'cosine'])
def test_closed_form_matches_the_chain(name):
    "Iterating q(x_t | x_{t-1}) gives the mean and std of q(x_t | x_0), pixel by pixel."
    s, g = nb_12.make_schedule(name, T=200), torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 16, dtype=torch.float64)
    x = x0.expand(8192, -1).clone()
    for t in range(120):
        b = s.betas[t].item()
        x = math.sqrt(1 - b) * x + math.sqrt(b) * torch.randn(x.shape, generator=g,
                                                               dtype=torch.float64)
    a = s.abar[119].item()
    assert (x.mean(0) - math.sqrt(a) * x0).abs().max() < 0.05     # 1/sqrt(8192) = 0.011
    assert (x.std(0) - math.sqrt(1 - a)).abs().max() < 0.05
    eps = torch.randn(8192, 16, generator=g, dtype=torch.float64)
    xt = nb_12.q_sample(x0.expand(8192, -1), torch.full((8192,), 119), eps, s)
    assert (xt.mean(0) - x.mean(0)).abs().max() < 0.06


def test_timestep_embedding():
    e = nb_12.timestep_embedding(torch.tensor([0, 7, 999]), 8)
    assert e.shape == (3, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.] * 4 + [0.] * 4))
    torch.testing.assert_close(e[1, 0], torch.tensor(math.cos(7.)))   # the fastest frequency: 1
    with pytest.raises(ValueError, match='even'): nb_12.timestep_embedding(torch.tensor([1]), 7)


@pytest.mark.parametrize('nfs', [(8, 16, 32), (8, 8, 16, 16)])     # 28 -> 14 -> 7 (-> 4 -> 7)
def test_unet_shapes_at_every_level(nfs):
    torch.manual_seed(0)
    m = nb_12.UNet(nfs, n_blocks=2)
    seen = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
             for mod in [*m.downs, *m.mid, *m.ups]]
    x = torch.randn(3, 1, 28, 28)
    out = m(x, torch.tensor([0, 500, 999]))
    for h in hooks: h.remove()
    assert out.shape == x.shape
    sides = [s[-1] for s in seen]
    want = [28, 14, 7, 4][:len(nfs)]
    assert sorted(set(sides)) == sorted(want)
    n_down = len(nfs) * 2 + len(nfs) - 1
    assert [s[1] for s in seen[:n_down] if True][-1] == nfs[-1]     # the down path ends widest
    assert seen[-1][1:] == (nfs[0], 28, 28)                         # the up path ends full size


def test_unet_errors():
    with pytest.raises(ValueError, match='divisible by 4'): nb_12.UNet((8, 10))
    m = nb_12.UNet((8, 16), 1)
    with pytest.raises(ValueError, match='bs, c, h, w'):
        m(torch.randn(2, 784), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match='steps'): m(torch.randn(2, 1, 28, 28), torch.tensor([1]))


def test_the_step_changes_the_output_through_the_scale_and_shift():
    torch.manual_seed(0)
    m, x = nb_12.UNet((8, 16, 32), 1), torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a, b = m(x, torch.tensor([5, 5])), m(x, torch.tensor([800, 800]))
        assert (a - b).abs().mean() > 1e-3
        for mod in m.modules():
            if isinstance(mod, nb_12.EmbResBlock): mod.emb.weight.zero_(); mod.emb.bias.zero_()
        torch.testing.assert_close(m(x, torch.tensor([5, 5])), m(x, torch.tensor([800, 800])))


def test_attention_hook_goes_where_asked():
    m = nb_12.UNet((8, 16, 32), 1, attn=lambda nf: torch.nn.Identity(), attn_levels=(2,))
    m2 = nb_12.UNet((8, 16, 32), 1, attn=lambda nf: torch.nn.Conv2d(nf, nf, 1), attn_levels=(2,))
    n = sum(isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (1, 1) and
            mod.in_channels == mod.out_channels for mod in m2.modules())
    assert n == 1 + 1 + 2                      # 1 down block, the middle, 2 up blocks at level 2
    assert m(torch.randn(1, 1, 28, 28), torch.tensor([3])).shape == (1, 1, 28, 28)


class _Fake:
    pass


@pytest.mark.parametrize('labels', [False, True])
def test_noise_cb_turns_a_batch_into_noised_images(labels):
    s, cb, f = nb_12.make_schedule('cosine', T=30), None, _Fake()
    cb = nb_12.NoiseCB(s, labels)
    x, y = torch.rand(6, 784), torch.arange(6)
    f.batch = (x, y)
    torch.manual_seed(0)
    cb.before_batch(f)
    if labels:
        xt, t, yy, eps = f.batch
        assert torch.equal(yy, y)
    else: xt, t, eps = f.batch
    assert xt.shape == eps.shape == (6, 1, 28, 28) and t.shape == (6,) and t.max() < 30
    torch.testing.assert_close(xt, nb_12.q_sample(x.view(6, 1, 28, 28) * 2 - 1, t, eps, s))


def test_ema_cb_averages_with_a_warmed_up_decay():
    cb, f, m = nb_12.EMACB(0.5), _Fake(), torch.nn.Linear(3, 1)
    f.model, f.training = m, True
    cb.before_fit(f)
    w = [m.weight.detach().clone()]
    for k in range(1, 4):
        with torch.no_grad(): m.weight.add_(1.)
        cb.after_batch(f)
        d = min(0.5, (1 + k) / (10 + k))
        w.append(d * w[-1] + (1 - d) * m.weight.detach())
    torch.testing.assert_close(cb.ema.weight, w[-1])
    f.training = False
    cb.after_batch(f)                                               # validation: no update
    torch.testing.assert_close(cb.ema.weight, w[-1])
    assert not any(p.requires_grad for p in cb.ema.parameters())


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    return nb_12.UNet((8, 16, 32), 1).eval()


@pytest.mark.parametrize('clip', [True, False])
def test_ddim_with_eta_1_and_every_step_is_ddpm(tiny_model, clip):
    s = nb_12.make_schedule('cosine', T=40)
    a = nb_12.ddpm_sample(tiny_model, s, 3, generator=torch.Generator().manual_seed(1), clip=clip)
    b = nb_12.ddim_sample(tiny_model, s, 3, steps=40, eta=1., clip=clip,
                          generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    c = nb_12.ddim_sample(tiny_model, s, 3, steps=40, eta=0.5, clip=clip,
                          generator=torch.Generator().manual_seed(1))
    assert (a - c).abs().max() > 1e-2


def test_ddim_eta_0_is_deterministic_and_batch_size_free(tiny_model):
    s = nb_12.make_schedule('linear', T=100)
    a = nb_12.ddim_sample(tiny_model, s, 6, 10, bs=6, generator=torch.Generator().manual_seed(2))
    b = nb_12.ddim_sample(tiny_model, s, 6, 10, bs=4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert a.shape == (6, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    assert nb_12.ddim_steps(100, 10)[0] == 99 and nb_12.ddim_steps(100, 10)[-1] == 0
    with pytest.raises(ValueError, match='steps'): nb_12.ddim_steps(100, 101)


def test_ddim_steps_power_puts_the_steps_at_high_noise():
    assert nb_12.ddim_steps(1000, 4, power=1.) == [999, 666, 333, 0]
    assert nb_12.ddim_steps(1000, 4, power=0.5) == [999, 816, 577, 0]   # 999 * u ** 0.5
    for k in (10, 25, 100):
        lin, dense = nb_12.ddim_steps(1000, k), nb_12.ddim_steps(1000, k, power=0.7)
        assert lin[0] == dense[0] == 999 and lin[-1] == dense[-1] == 0 and len(dense) == k
        assert all(d >= v for d, v in zip(dense, lin))              # every step at more noise
        assert dense == sorted(set(dense), reverse=True)              # strictly falling
    assert nb_12.ddim_steps(1000, 1000, power=0.7) == sorted(set(
        nb_12.ddim_steps(1000, 1000, power=0.7)), reverse=True)      # merged, never repeated
    with pytest.raises(ValueError, match='power > 0'): nb_12.ddim_steps(1000, 25, power=0.)


def test_ddim_sample_visits_the_steps_of_its_power(tiny_model):
    s, seen = nb_12.make_schedule('cosine', T=100), []
    class Spy(torch.nn.Module):
        "The tiny model, noting the step of each call."
        def __init__(self): super().__init__(); self.m = tiny_model
        def forward(self, x, t): seen.append(int(t[0])); return self.m(x, t)
    nb_12.ddim_sample(Spy(), s, 2, 8, power=0.6, generator=torch.Generator().manual_seed(0))
    assert seen == nb_12.ddim_steps(100, 8, power=0.6) and seen != nb_12.ddim_steps(100, 8)


@pytest.mark.parametrize('eta', [0., 1.])
def test_dpmpp_of_order_1_is_ddim(tiny_model, eta):
    s = nb_12.make_schedule('cosine', T=100)
    for clip in (True, False):
        kw = dict(eta=eta, power=0.7, clip=clip)
        a = nb_12.ddim_sample(tiny_model, s, 3, 12, generator=torch.Generator().manual_seed(4),
                              **kw)
        b = nb_12.dpmpp_sample(tiny_model, s, 3, 12, order=1,
                               generator=torch.Generator().manual_seed(4), **kw)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    c = nb_12.dpmpp_sample(tiny_model, s, 3, 12, eta=eta, power=0.7,
                           generator=torch.Generator().manual_seed(4))
    assert (a - c).abs().max() > 1e-3                                # order 2 is another step


def test_dpmpp_is_second_order_where_ddim_is_first():
    s = nb_12.make_schedule('cosine')
    g = nb_12.GaussDenoiser(s)
    xT = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    exact = g.ode_end(xT).clamp(-1, 1)
    def err(f, k):
        "RMS distance to the exact end after `k` steps of sampler `f` (power 2)."
        x = f(g, s, 16, k, clip=False, power=2., generator=torch.Generator().manual_seed(0))
        return float((x - exact).pow(2).mean().sqrt())
    d1, d2 = [err(nb_12.ddim_sample, k) for k in (20, 40)], [err(nb_12.dpmpp_sample, k)
                                                             for k in (20, 40)]
    assert 1.6 < d1[0] / d1[1] < 2.4                               # halve the step: half the error
    assert 3.2 < d2[0] / d2[1] < 8                                 # ... a quarter of it
    assert d2[1] < d1[1] / 5


def test_dpmpp_sample_errors_and_range(tiny_model):
    s = nb_12.make_schedule('cosine', T=50)
    with pytest.raises(ValueError, match='order is 1 or 2'): nb_12.dpmpp_sample(tiny_model, s, 2,
                                                                                 order=3)
    with pytest.raises(ValueError, match='eta >= 0'): nb_12.dpmpp_sample(tiny_model, s, 2,
                                                                          eta=-0.5)
    x = nb_12.dpmpp_sample(tiny_model, s, 5, 10, eta=1., bs=2,
                           generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


def test_x0_and_eps_are_consistent():
    x, eps = torch.randn(4, 1, 28, 28) * 2, torch.randn(4, 1, 28, 28)
    x0, e = nb_12.x0_and_eps(x, eps, 0.3, clip=True)
    assert x0.abs().max() <= 1
    torch.testing.assert_close(math.sqrt(0.3) * x0 + math.sqrt(0.7) * e, x)
    x0u, eu = nb_12.x0_and_eps(x, eps, 0.3, clip=False)
    assert torch.equal(eu, eps) and x0u.abs().max() > 1


def test_a_short_training_lowers_the_loss(data):
    x = nb_12._quiet_fashion()[0][:3840]
    torch.manual_seed(0)
    m = nb_12.UNet((8, 16, 32), 1)
    rec = nb_12.RecorderCB()
    nb_12.fit_ddpm(m, nb_12.make_schedule('cosine'), x, epochs=1, bs=128, lr=3e-3, cbs=[rec],
                   device='cpu')
    first, last = sum(rec.losses[:3]) / 3, sum(rec.losses[-3:]) / 3
    assert len(rec.losses) == 30 and last < 0.7 * first


def test_fit_ddpm_checks_labels(data):
    with pytest.raises(ValueError, match='y_valid'):
        nb_12.fit_ddpm(nb_12.UNet((8, 16), 1), nb_12.make_schedule(), torch.rand(8, 784),
                       y=torch.zeros(8, dtype=torch.long))


def test_train_ddpm_is_cached(data, capsys):
    kw = dict(nfs=(8, 16), n_blocks=1, n_train=256, bs=128, device='cpu')
    m1 = nb_12.train_ddpm(**kw)
    assert 'no cache yet' in capsys.readouterr().out
    m2 = nb_12.train_ddpm(**kw)
    assert 'from the cache' in capsys.readouterr().out
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 600])
    with torch.no_grad(): assert torch.equal(m1(x, t), m2(x, t))
