"""Class-conditional diffusion of `exp.nb_13`: `CondUNet`'s output depends on the label, labels are
dropped for guidance at the rate asked, `Guided` computes its formula, `sample_classes` gives a
batch per class, and a short conditional training lowers the loss (and is cached)."""
from types import SimpleNamespace

import pytest
import torch

from exp import nb_05, nb_10, nb_12, nb_13

pytestmark = pytest.mark.nb13



def _inputs(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 1000, (n,), generator=g)


def test_cond_unet_output_depends_on_the_label():
    torch.manual_seed(0)
    m = nb_13.CondUNet(10, (8, 16, 32), 1)
    x, t = _inputs()
    y = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        out = m(x, t, y)
        assert out.shape == x.shape
        assert (out - m(x, t, (y + 1) % 10)).abs().mean() > 1e-3
        assert (out - m(x, t, torch.full((4,), 10))).abs().mean() > 1e-3   # the null class
        torch.testing.assert_close(m(x[:1], t[:1], y[:1]), out[:1])      # per image
        m.cls_emb.weight.zero_()                                         # label-blind now
        torch.testing.assert_close(m(x, t, y), m(x, t, (y + 1) % 10))


def test_cond_unet_errors():
    m = nb_13.CondUNet(10, (8, 16, 32), 1)
    x, t = _inputs()
    with pytest.raises(ValueError, match='pass labels y'):
        m(x, t)
    with pytest.raises(ValueError, match=r'0\.\.10'):
        m(x, t, torch.tensor([0, 1, 2, 11]))
    with pytest.raises(ValueError, match='pass labels y'):
        m(x, t, torch.tensor([0, 1]))


def test_drop_label_cb_drops_at_the_rate_asked_in_training_only():
    y = torch.arange(20000) % 10
    cb = nb_13.DropLabelCB(10, p=0.2)
    learn = SimpleNamespace(training=True, batch=('xt', 't', y, 'eps'))
    torch.manual_seed(0)
    cb.before_batch(learn)
    new = learn.batch[2]
    dropped = (new == 10).float().mean().item()
    assert abs(dropped - 0.2) < 0.015                       # about 5 standard errors
    assert torch.equal(new[new != 10], y[new != 10])
    assert learn.batch[0] == 'xt' and learn.batch[3] == 'eps'
    learn = SimpleNamespace(training=False, batch=('xt', 't', y, 'eps'))
    cb.before_batch(learn)
    assert learn.batch[2] is y


def test_guided_is_the_cfg_formula():
    torch.manual_seed(0)
    m = nb_13.CondUNet(10, (8, 16, 32), 1)
    x, t = _inputs(1)
    y = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        ec, eu = m(x, t, y), m(x, t, torch.full((4,), 10))
        torch.testing.assert_close(nb_13.Guided(m, 0.)(x, t, y), ec)
        torch.testing.assert_close(nb_13.Guided(m, 3.)(x, t, y), ec + 3 * (ec - eu),
                                   rtol=1e-4, atol=1e-5)


def test_sample_classes_gives_each_class():
    torch.manual_seed(0)
    m = nb_13.CondUNet(10, (8, 16, 32), 1).eval()
    s, y = nb_13.sample_classes(m, nb_12.make_schedule('cosine', T=50), n_per_class=2, w=1.,
                                steps=3, bs=7)
    assert s.shape == (20, 1, 28, 28) and s.min() >= -1 and s.max() <= 1
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    s2, _ = nb_13.sample_classes(m, nb_12.make_schedule('cosine', T=50), n_per_class=2, w=1.,
                                 steps=3, bs=7)
    assert torch.equal(s, s2)                                # seeded: the same samples again


def test_short_conditional_training_lowers_the_loss(data):
    x_train, y_train, _, _ = nb_10._quiet_fashion()
    torch.manual_seed(0)
    m = nb_13.CondUNet(10, (8, 16, 32), 1)
    rec = nb_05.RecorderCB()
    nb_12.fit_ddpm(m, nb_12.make_schedule('cosine'), x_train[:2560], epochs=1, bs=64, lr=3e-3,
                   amp=False, device='cpu', x_valid=x_train[:64], y=y_train[:2560],
                   y_valid=y_train[:64], cbs=[nb_13.DropLabelCB(10, 0.1), rec])
    first, last = sum(rec.losses[:5]) / 5, sum(rec.losses[-5:]) / 5
    assert len(rec.losses) == 40 and last < 0.7 * first


def test_train_cond_ddpm_is_cached(data, capsys):
    tiny = dict(nfs=(4, 8, 8), n_train=256, bs=128, device='cpu', amp=False)
    m1 = nb_13.train_cond_ddpm(**tiny)
    assert 'no cache yet' in capsys.readouterr().out
    m2 = nb_13.train_cond_ddpm(**tiny)
    assert 'from the cache' in capsys.readouterr().out
    assert isinstance(m2, nb_13.CondUNet)
    assert sum(isinstance(o, nb_13.SelfAttention2d) for o in m2.modules()) == 4
    x, t = _inputs()
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad(): torch.testing.assert_close(m1(x, t, y), m2(x, t, y))
    m3 = nb_13.train_attn_ddpm((), nfs=(4, 8, 8), n_train=256, bs=128, device='cpu', amp=False)
    assert 'no cache yet' in capsys.readouterr().out
    assert not any(isinstance(o, nb_13.SelfAttention2d) for o in m3.modules())
