"""Batch augmentation and test-time augmentation of `exp.nb_08`."""
import pytest
import torch
from torch import nn

from exp import nb_08

pytestmark = pytest.mark.nb08


def test_random_crop_shifts_each_image_by_at_most_pad():
    torch.manual_seed(0)
    x = torch.arange(1., 1 + 64 * 10 * 10).view(64, 1, 10, 10)
    out = nb_08.random_crop(x, pad=2)
    assert out.shape == x.shape
    shifts = set()
    for xi, oi in zip(x, out):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(oi[:, 2:-2, 2:-2], xi[:, 2 + dy:8 + dy, 2 + dx:8 + dx])]
        assert len(found) == 1                  # the centre is a shifted copy of the input
        shifts.add(found[0])
    assert len(shifts) > 10                     # one shift per image, not one per batch


def test_random_crop_fills_each_image_and_channel_with_its_minimum_and_keeps_channels_together():
    torch.manual_seed(1)
    x = torch.ones(50, 3, 6, 6) + torch.arange(50.)[:, None, None, None]   # image i: i + 1 ...
    x[:, 1] += 5.                                                          # ... channel 1: i + 6
    x[:, :, 0, 0] -= 0.5                                                   # the minimum, one pixel
    out = nb_08.random_crop(x, pad=1)
    lo = x.amin((-2, -1), keepdim=True)                                    # (50, 3, 1, 1)
    padded = out == lo                                 # border pixels, and the corner if kept
    assert padded.sum() > 50 * 3 * 6                   # most images shifted: a row or column each
    for xi, oi in zip(x, out):                         # only the image's own values appear
        for xc, oc in zip(xi, oi): assert set(oc.unique().tolist()) <= set(xc.unique().tolist())
    assert torch.equal(padded[:, 1], padded[:, 0])     # the channels of an image shift together
    assert torch.equal(nb_08.random_crop(x, pad=0), x)


def test_random_crop_takes_a_fill_value():
    torch.manual_seed(2)
    x = torch.ones(20, 2, 5, 5)
    out = nb_08.random_crop(x, pad=2, fill=-3.)
    assert set(out.unique().tolist()) == {-3., 1.}
    assert torch.equal(nb_08.augment(x, pad=2, p_flip=0., fill=7.).unique(), torch.tensor([1., 7.]))


def test_random_crop_pads_fashion_mnist_with_background_not_mean_grey(tmp_path, monkeypatch):
    monkeypatch.setenv("FOUNDATIONS_DATA", str(tmp_path))
    x_train, _, x_test, _ = nb_08.get_fashion_mnist()
    mean, std = x_train.mean(), x_train.std()
    xb = ((x_test[:256] - mean) / std).view(-1, 1, 28, 28)                # (256, 1, 28, 28)
    background = (-mean / std).item()                                     # a raw 0 pixel: -0.81
    torch.manual_seed(0)
    out = nb_08.random_crop(xb, pad=4)
    moved = ~(out == xb).all(-1).all(-1).all(-1)                          # (256,)
    assert moved.sum() > 200
    # the rows and columns the pad brought in hold the background, never 0 (the mean, grey)
    for xi, oi in zip(xb, out):
        assert set(oi.unique().tolist()) <= set(xi.unique().tolist())
    assert not (out == 0).any()
    torch.testing.assert_close(out.amin((-2, -1)), torch.full((256, 1), background))


def test_random_flip_mirrors_about_half_the_images():
    torch.manual_seed(0)
    x = torch.randn(400, 1, 5, 5)
    out = nb_08.random_flip(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all()
    assert 150 < flipped.sum() < 250
    assert torch.equal(nb_08.random_flip(x, p=0.), x)
    assert torch.equal(nb_08.random_flip(x, p=1.), x.flip(-1))


def test_augment_keeps_shape_dtype_device_and_is_seeded():
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(3); a = nb_08.augment(x)
    torch.manual_seed(3); b = nb_08.augment(x)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_augment_batch_transforms_only_the_images():
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    xa, ya = nb_08.augment_batch((x, y))
    assert xa.shape == x.shape and ya is y


def test_bad_shapes_are_refused():
    for f in (nb_08.random_crop, nb_08.random_flip, nb_08.augment):
        with pytest.raises(ValueError, match=r'\(bs, c, h, w\).*\(4, 784\)'): f(torch.rand(4, 784))
    with pytest.raises(ValueError, match='pad must be >= 0'):
        nb_08.random_crop(torch.rand(1, 1, 4, 4), pad=-1)


def test_tta_averages_plain_and_flipped_probabilities():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(5, 1, 3, 4)
    p = nb_08.tta_predict(model, x)
    expect = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2
    torch.testing.assert_close(p, expect)
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
    assert not p.requires_grad


def test_tta_of_a_mirror_symmetric_model_changes_nothing():
    model = nn.Sequential(nb_08.GlobalAvgPool(), nn.Linear(2, 4))   # the grid mean ignores a flip
    x = torch.randn(6, 2, 5, 5)
    torch.testing.assert_close(nb_08.tta_predict(model, x), model(x).softmax(-1))
