"""`fit` of `exp.nb_03` switches the model between training and evaluation mode, and its pieces
(`evaluate`, `ProgressTable`) keep the loop plain."""
import math

import pytest
import torch
from torch import nn

from exp import nb_03

pytestmark = pytest.mark.nb03


class ModeRecorder(nn.Module):
    "Identity layer recording, at each call, the training flag and whether autograd is recording."
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return x


def fit_recorded(epochs, start_in_eval, n_train=12, n_valid=10, bs=4, valid_bs=5):
    "Fit a linear model with a `ModeRecorder` on small random data; return what the recorder saw."
    torch.manual_seed(0)
    rec = ModeRecorder()
    model = nn.Sequential(nn.Linear(3, 2), rec)
    if start_in_eval: model.eval()
    tds = nb_03.Dataset(torch.randn(n_train, 3), torch.randint(0, 2, (n_train,)))
    vds = nb_03.Dataset(torch.randn(n_valid, 3), torch.randint(0, 2, (n_valid,)))
    nb_03.fit(epochs, model, nb_03.cross_entropy, nb_03.Optimizer(model.parameters(), 0.1),
              nb_03.DataLoader(tds, nb_03.Sampler(tds, bs, shuffle=True)),
              nb_03.DataLoader(vds, nb_03.Sampler(vds, valid_bs)), progress=False)
    return rec.seen, model


@pytest.mark.parametrize('start_in_eval', [False, True])
def test_fit_trains_in_train_mode_and_validates_in_eval_mode(start_in_eval):
    seen, model = fit_recorded(3, start_in_eval)
    train, valid = (True, True), (False, False)   # (training flag, grad enabled)
    assert seen == ([train] * 3 + [valid] * 2) * 3   # each epoch: 3 training batches, 2 validation
    assert not model.training                        # left in evaluation mode after validation


def test_second_epoch_is_back_in_train_mode():
    "Fails if `fit` sets `model.train()` only once, before the first epoch."
    seen, _ = fit_recorded(2, start_in_eval=False)
    assert [training for training, _ in seen[5:8]] == [True, True, True]


def test_evaluate_weights_by_batch_size_and_handles_none():
    torch.manual_seed(0)
    x, y = torch.randn(7, 3) * 3, torch.randint(0, 2, (7,))
    model = nn.Linear(3, 2)
    ds = nb_03.Dataset(x, y)
    loss, acc = nb_03.evaluate(model, nb_03.cross_entropy, nb_03.DataLoader(ds, nb_03.Sampler(ds, 3)))
    with torch.no_grad(): out = model(x)
    assert loss == pytest.approx(nb_03.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx(nb_03.accuracy(out, y).item(), rel=1e-6)
    assert all(math.isnan(v) for v in nb_03.evaluate(model, nb_03.cross_entropy, None))


def test_progress_table_off_passes_batches_through(capsys):
    bar = nb_03.ProgressTable(2, ['train_loss'], show=False)
    dl = [1, 2, 3]
    assert list(bar) == [0, 1]
    assert bar.batches(dl) is dl
    bar.write(0, [0.5])
    assert capsys.readouterr().out == ''


def test_progress_table_writes_a_row_per_epoch(capsys):
    bar = nb_03.ProgressTable(2, ['train_loss', 'accuracy'], show=True)
    for epoch in bar:
        assert list(bar.batches([1, 2])) == [1, 2]
        bar.write(epoch, [0.25, 0.75])
    out = capsys.readouterr().out
    assert 'train_loss' in out and '0.2500' in out and '0.7500' in out
