"""The FID classifier of `exp.nb_11`: trained by `train_fid_classifier`, cached with a checksum and an
atomic write, rebuilt when the cache is missing or corrupt; and `ImageEval` on top of it."""
import os

import pytest
import torch

from exp import nb_10, nb_11

pytestmark = pytest.mark.nb11

TINY = dict(epochs=1, nfs=(4, 8), n_train=512, bs=128, device='cpu')   # seconds, not minutes



def _path():
    s = TINY.copy(); s.pop('device')
    settings = dict(epochs=s['epochs'], nfs=list(s['nfs']), lr=1e-2, bs=s['bs'],
                    n_train=s['n_train'], seed=0)
    return nb_10.model_path('fid_classifier', settings)


def test_missing_cache_trains_then_hits(data, capsys):
    m1 = nb_11.train_fid_classifier(**TINY)
    assert 'no cache yet' in capsys.readouterr().out
    assert _path().exists()
    m2 = nb_11.train_fid_classifier(**TINY)
    assert 'from the cache' in capsys.readouterr().out
    x = torch.rand(6, 784)
    assert torch.equal(m1.features(x), m2.features(x)) and m2.features(x).shape == (6, 8)


@pytest.mark.parametrize('damage', ['garbage', 'wrong_checksum', 'truncated'])
def test_corrupt_cache_is_rebuilt(data, capsys, damage):
    good = nb_11.train_fid_classifier(**TINY)
    capsys.readouterr()
    path = _path()
    raw = path.read_bytes()
    n = len(nb_10.CACHE_MAGIC)
    if damage == 'garbage': path.write_bytes(os.urandom(len(raw)))
    elif damage == 'wrong_checksum': path.write_bytes(raw[:n] + b'f' * 64 + raw[n + 64:])
    else: path.write_bytes(raw[:len(raw) // 2])
    again = nb_11.train_fid_classifier(**TINY)
    assert 'cache rejected' in capsys.readouterr().out
    assert nb_10.load_state(path).keys() == good.state_dict().keys()     # a sound file again
    x = torch.rand(4, 784)
    assert torch.allclose(good.features(x), again.features(x))         # seeded: the same model


def test_failed_write_leaves_no_partial_file(data, monkeypatch):
    def boom(fd): raise OSError('disk full')
    monkeypatch.setattr(nb_10.os, 'fsync', boom)
    with pytest.raises(OSError, match='disk full'):
        nb_11.train_fid_classifier(**TINY)
    folder = _path().parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_classifier_learns(data):
    clf = nb_11.train_fid_classifier(epochs=2, nfs=(8, 16), n_train=4000, bs=64, device="cpu")
    x_train, y_train, x_test, y_test = nb_10._quiet_fashion()
    assert nb_11.accuracy_of(clf, x_test[:2000], y_test[:2000]) > 0.4      # chance: 0.1


def test_feature_classifier_rejects_other_sizes():
    with pytest.raises(ValueError, match='28x28'):
        nb_11.FeatureClassifier((4, 8)).features(torch.rand(2, 1, 32, 32))


def test_image_eval(data):
    torch.manual_seed(0)
    clf = nb_11.FeatureClassifier((4, 8)).eval()
    ref = torch.rand(300, 784)
    ie = nb_11.ImageEval(clf, ref=ref, bs=64)
    assert ie.ref_feats.shape == (300, 8) and ie.ref_feats.dtype == torch.float64
    assert abs(ie.fid(ref)) < 1e-8                                   # the reference itself
    assert ie.fid(ref.view(300, 1, 28, 28)) == pytest.approx(ie.fid(ref), abs=1e-9)
    ie2 = nb_11.ImageEval(clf, ref=ref, in_range=(-1., 1.))
    assert torch.allclose(ie2.feats(ref[:5] * 2 - 1), ie.feats(ref[:5]), atol=1e-5)
    fl = ie.floor(torch.rand(200, 784), 50, draws=3)
    assert len(fl['fid']) == len(fl['kid']) == 3 and all(f > 0 for f in fl['fid'])
    assert ie.fid(torch.zeros(50, 784)) > max(fl['fid'])             # blank images: far worse
    with pytest.raises(ValueError, match='n=500'):
        ie.floor(ref, 500)
    with pytest.raises(ValueError, match='at least 2'):
        ie.fid(ref[:1])


def test_image_eval_puts_its_default_reference_in_in_range(data):
    "Images in [-1, 1] against the default reference score as the same images in [0, 1] do."
    torch.manual_seed(0)
    clf = nb_11.FeatureClassifier((4, 8))
    x = nb_10._quiet_fashion()[2][:300]                      # real test images in [0, 1]
    unit, signed = nb_11.ImageEval(clf), nb_11.ImageEval(clf, in_range=(-1., 1.))
    torch.testing.assert_close(signed.ref_feats, unit.ref_feats, atol=1e-5, rtol=1e-5)
    assert abs(signed.fid(x * 2 - 1) - unit.fid(x)) < 1e-6
