"""`MixedPrecisionCB` on the CPU: bfloat16, and float16 with torch's CPU `GradScaler` (no GPU
needed); `average_gradients` with one process standing in for two equal ranks. One process, fast.
"""
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp import nb_07, nb_09

pytestmark = [pytest.mark.nb09, pytest.mark.usefixtures("watchdog", "one_thread")]
WATCHDOG_S = 60  # seconds before a hung test ends pytest (conftest's `watchdog`)


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def bn_cnn(norm):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), norm(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, 2, 1, bias=False), norm(16), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def learner(model, cbs=()):
    (x, y), (xv, yv) = images(64, 1), images(32, 2)
    return nb_09.Learner(model, nb_09.get_dls(x, y, xv, yv, 16), F.cross_entropy, lr=0.1,
                         cbs=[nb_09.MetricsCB(show=False), *cbs])


class Dtypes(nb_09.Callback):
    "The dtype of the predictions of each training batch."
    def __init__(self): self.seen = []
    def after_predict(self, learn):
        if learn.training: self.seen.append(learn.preds.dtype)


def test_float16_on_cpu_lowers_the_scale_after_each_overflow(monkeypatch):
    "At a loss scale of 2**60 every float16 gradient overflows: each step is skipped, scale halved."
    monkeypatch.setattr(torch.amp, 'GradScaler',
                        functools.partial(torch.amp.GradScaler, init_scale=2.**60))
    cb = nb_09.MixedPrecisionCB(dtype=torch.float16)
    learn = learner(bn_cnn(nn.BatchNorm2d), [cb])
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1)                                              # 64 rows, batches of 16: 4 steps
    assert cb.scaler.get_scale() == 2.**56                    # update() after every step
    for k, p in learn.model.named_parameters(): assert torch.equal(p, before[k]), k   # all skipped


def test_float16_on_cpu_trains_in_float32_weights():
    dtypes, cb = Dtypes(), nb_09.MixedPrecisionCB(dtype=torch.float16)
    learn = learner(bn_cnn(nn.BatchNorm2d), [cb, dtypes])
    before = [p.clone() for p in learn.model.parameters()]
    learn.fit(2)
    assert isinstance(cb.scaler, torch.amp.GradScaler) and cb.scaler.get_scale() == 2.**16
    assert set(dtypes.seen) == {torch.float16}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, learn.model.parameters()))
    assert all(torch.isfinite(torch.tensor(h['train_loss'])) for h in learn.metrics.history)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mixed_precision_with_our_batchnorm(dtype):
    "Needs 07's norms to keep their statistics in float32 under autocast (branch `bnorm`)."
    dtypes, model = Dtypes(), bn_cnn(nb_07.BatchNorm)
    learn = learner(model, [nb_09.MixedPrecisionCB(dtype=dtype), dtypes])
    learn.fit(1)
    bn = model[1]
    assert bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    assert bn.running_mean.abs().sum() > 0 and set(dtypes.seen) == {dtype}
    assert torch.isfinite(torch.tensor(learn.metrics.last['valid_loss']))


def test_mixed_precision_for_one_fit_only():
    "A TrainCB given to one fit takes the step for that fit (needs branch `learner`'s rule)."
    dtypes = Dtypes()
    learn = learner(bn_cnn(nn.BatchNorm2d), [dtypes])
    learn.fit(1, cbs=[nb_09.MixedPrecisionCB()])
    assert set(dtypes.seen) == {torch.bfloat16}
    dtypes.seen.clear()
    learn.fit(1)                                       # the learner's own TrainCB again
    assert set(dtypes.seen) == {torch.float32}


def test_average_gradients_divides_by_the_world_size(monkeypatch):
    "Two equal ranks, stood in for: `all_reduce` doubles each tensor (the sum of two equal ones)."
    monkeypatch.setattr(nb_09, 'get_world_size', lambda: 2)
    monkeypatch.setattr(nb_09.dist, 'all_reduce', lambda t, *args, **kwargs: t.mul_(2))
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    F.cross_entropy(model(torch.randn(8, 3)), torch.tensor([0, 1] * 4)).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    nb_09.average_gradients(model)                     # the mean of two equal gradients: the same
    for g, p in zip(grads, model.parameters()): assert torch.allclose(p.grad, g, atol=1e-7)
    nb_09.average_gradients(model, n=8)                # weighted by 8 rows each: the same again
    for g, p in zip(grads, model.parameters()): assert torch.allclose(p.grad, g, atol=1e-7)
