"""Callbacks and helpers of `exp.nb_04`: DataLoaders, devices, metrics against a direct computation,
MetricsCB, ProgressCB, EarlyStopCB, BatchTransformCB."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exp import nb_04

pytestmark = pytest.mark.nb04


@pytest.fixture(autouse=True)
def one_thread():
    "Tiny tensors: one thread is faster, and immune to a busy machine's oversubscription."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_dls(n_train=7, n_valid=5, bs=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.randn(n_train, 4, generator=g), torch.randint(0, 3, (n_train,), generator=g)
    xv, yv = torch.randn(n_valid, 4, generator=g), torch.randint(0, 3, (n_valid,), generator=g)
    return nb_04.get_dls(xt, yt, xv, yv, bs)


def test_dataloaders_from_dsets():
    dls = tiny_dls(n_train=10, n_valid=9, bs=4)
    assert len(dls.train) == 3 and len(dls.valid) == 2            # valid: batches of 2*bs
    xb, yb = next(iter(dls.valid))
    assert torch.equal(xb, dls.valid.ds.x[:8]) and torch.equal(yb, dls.valid.ds.y[:8])
    seen = torch.cat([yb for _, yb in dls.train])
    assert sorted(seen.tolist()) == sorted(dls.train.ds.y.tolist())   # every row once
    custom = nb_04.get_dls(*[t for ds in (dls.train.ds, dls.valid.ds) for t in (ds.x, ds.y)], 4,
                           valid_bs=9, shuffle=False)
    assert len(custom.valid) == 1 and torch.equal(next(iter(custom.train))[0], dls.train.ds.x[:4])
    with pytest.raises(ValueError, match='differ in length'):
        nb_04.get_dls(torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1), 2)


def test_to_device_nested_and_def_device():
    x = (torch.zeros(2), [torch.ones(1), 'label'], {'a': torch.arange(3)}, 7)
    y = nb_04.to_device(x, 'meta')
    assert type(y) is tuple and type(y[1]) is list and y[1][1] == 'label' and y[3] == 7
    assert y[0].device.type == 'meta' and y[1][0].device.type == 'meta' and y[2]['a'].device.type == 'meta'
    expected = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    assert nb_04.def_device.type == expected


def test_no_cuda_calls_in_the_library():
    import inspect
    assert '.cuda(' not in inspect.getsource(nb_04)


def test_device_cb_moves_model_and_batches():
    seen = []
    class Peek(nb_04.Callback):
        def after_predict(self, learn): seen.append((learn.batch[0].device, learn.preds.device))
    model = nn.Linear(4, 3)
    nb_04.Learner(model, tiny_dls(), cbs=[nb_04.DeviceCB(), Peek()]).fit(1)
    assert next(model.parameters()).device.type == nb_04.def_device.type
    assert {(a.type, b.type) for a, b in seen} == {(nb_04.def_device.type,) * 2}


def test_batch_transform_cb_per_pass():
    shapes = []
    class Peek(nb_04.Callback):
        def before_batch(self, learn): shapes.append((learn.training, tuple(learn.batch[0].shape)))
    tfm = nb_04.BatchTransformCB(lambda b: (b[0].view(-1, 1, 2, 2), b[1]), on_valid=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    nb_04.Learner(model, tiny_dls(n_train=6, n_valid=6), cbs=[tfm, Peek()]).fit(1)
    assert set(shapes) == {(True, (3, 1, 2, 2)), (False, (6, 4))}


def test_mean_is_weighted_by_batch_size():
    m = nb_04.Mean()
    assert math.isnan(m.compute())
    m.update(torch.tensor(1.), 3); m.update(4., 1); m.update(torch.tensor(0., requires_grad=True), 4)
    assert m.compute() == pytest.approx((3 + 4) / 8)
    m.reset(); assert math.isnan(m.compute())


def test_accuracy_matches_direct_computation():
    torch.manual_seed(0)
    preds, targ = torch.randn(53, 7), torch.randint(0, 7, (53,))
    acc = nb_04.Accuracy()
    for i in range(0, 53, 10): acc.update(preds[i:i + 10], targ[i:i + 10])
    assert acc.compute() == pytest.approx((preds.argmax(1) == targ).double().mean().item(), abs=1e-12)
    with pytest.raises(ValueError, match='Accuracy'): acc.update(preds, targ[:3])


def test_metrics_cb_matches_whole_set_loss_and_accuracy():
    "At lr 0 the model does not change: every pass must give the whole-set loss and accuracy."
    torch.manual_seed(0)
    model, dls = nn.Linear(4, 3), tiny_dls()
    learn = nb_04.Learner(model, dls, lr=0., cbs=nb_04.MetricsCB(show=False, train_metrics=True))
    learn.fit(2)
    assert learn.metrics is learn.cbs[-1] and len(learn.metrics.history) == 2
    for row in learn.metrics.history:
        for phase, ds in (('train', dls.train.ds), ('valid', dls.valid.ds)):
            with torch.no_grad(): preds = model(ds.x)
            assert row[f'{phase}_loss'] == pytest.approx(F.cross_entropy(preds, ds.y).item(), rel=1e-6)
            assert row[f'{phase}_accuracy'] == pytest.approx(
                (preds.argmax(1) == ds.y).double().mean().item(), abs=1e-9)
    assert list(learn.metrics.last) == ['epoch', 'train_loss', 'train_accuracy', 'valid_loss',
                                        'valid_accuracy']
    default = nb_04.MetricsCB(show=False)
    nb_04.Learner(model, dls, cbs=default).fit(1)
    assert list(default.last) == ['epoch', 'train_loss', 'valid_loss', 'valid_accuracy']


def test_metrics_cb_named_and_positional_metrics_and_printing(capsys):
    class Count():
        def reset(self): self.n = 0
        def update(self, preds, targ): self.n += len(targ)
        def compute(self): return self.n
    cb = nb_04.MetricsCB(Count(), acc=nb_04.Accuracy(), train_metrics=True)
    nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=cb).fit(1)
    assert set(cb.last) == {'epoch', 'train_loss', 'train_acc', 'train_count', 'valid_loss', 'valid_acc',
                            'valid_count'}
    assert cb.last['train_count'] == 7 and cb.last['valid_count'] == 5
    out = capsys.readouterr().out
    assert out.count('\n') == 1 and 'valid_loss' in out and 'train_count 7' in out


def test_metrics_cb_skips_batches_cancelled_before_their_loss():
    class SkipFirst(nb_04.Callback):
        def before_batch(self, learn):
            if learn.iter == 0: raise nb_04.CancelBatchException()
    torch.manual_seed(0)
    model, dls = nn.Linear(4, 3), tiny_dls(n_train=6, n_valid=6, bs=3)
    cb = nb_04.MetricsCB(show=False)
    nb_04.Learner(model, dls, lr=0., cbs=[SkipFirst(), cb]).fit(1)
    ds = dls.valid.ds                                   # valid batch 0 (rows 0-5 at 2*bs) skipped
    assert math.isnan(cb.last['valid_loss'])
    xt = dls.train.ds
    assert not math.isnan(cb.last['train_loss'])       # one of the two training batches counted


def test_metrics_cb_without_validation_and_cancelled_fit(capsys):
    cb = nb_04.MetricsCB()
    nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=cb).fit(2, valid=False)
    assert len(cb.history) == 2 and 'valid_loss' not in cb.last
    assert capsys.readouterr().out.count('\n') == 2
    class StopInTraining(nb_04.Callback):
        def after_batch(self, learn): raise nb_04.CancelFitException()
    nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=[cb, StopInTraining()]).fit(3)
    assert len(cb.history) == 1 and 'train_loss' in cb.last
    assert capsys.readouterr().out.count('\n') == 1     # the cut-short epoch is still shown


def test_progress_cb_writes_one_row_per_epoch(capsys):
    cb = nb_04.ProgressCB(plot=True)
    learn = nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=[nb_04.MetricsCB(), cb])
    learn.fit(2)
    out = capsys.readouterr().out
    assert 'train_loss' in out and 'valid_accuracy' in out and 'time' in out
    assert len(cb.losses) == 2 * 3 and len(cb.valid_losses) == 2
    assert out.count('epoch') == 1                      # a header, then rows, not a print per pass
    assert isinstance(learn.dl, nb_04.DataLoader) or hasattr(learn.dl, 'gen')


def test_early_stop_on_real_overfitting_signal():
    "A validation loss that rises for `patience` epochs stops the fit; improvements reset the count."
    values = iter([1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.5, 0.4])
    class FakeMetrics(nb_04.Callback):
        order = 10
        def before_fit(self, learn): learn.metrics, self.history = self, []
        def after_epoch(self, learn):
            if learn.end_of_epoch: self.history.append({'valid_loss': next(values)})
        @property
        def last(self): return self.history[-1]
    fake = FakeMetrics()
    nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=[fake, nb_04.EarlyStopCB(patience=2)]).fit(8)
    assert [r['valid_loss'] for r in fake.history] == [1.0, 0.8, 0.9, 0.7, 0.75, 0.76]


def test_early_stop_errors():
    with pytest.raises(ValueError, match='mode'): nb_04.EarlyStopCB(mode='up')
    learn = nb_04.Learner(nn.Linear(4, 3), tiny_dls(),
                          cbs=[nb_04.MetricsCB(show=False), nb_04.EarlyStopCB('valid_f1')])
    with pytest.raises(KeyError, match='valid_f1'): learn.fit(1)


def test_early_stop_max_mode_and_min_delta():
    values = iter([0.5, 0.6, 0.605, 0.61, 0.9])
    class FakeMetrics(nb_04.Callback):
        order = 10
        def before_fit(self, learn): learn.metrics, self.history = self, []
        def after_epoch(self, learn):
            if learn.end_of_epoch: self.history.append({'acc': next(values)})
        @property
        def last(self): return self.history[-1]
    fake = FakeMetrics()
    stop = nb_04.EarlyStopCB('acc', patience=2, min_delta=0.01, mode='max')
    nb_04.Learner(nn.Linear(4, 3), tiny_dls(), cbs=[fake, stop]).fit(5)
    assert len(fake.history) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_fit_on_cuda_with_device_cb():
    torch.manual_seed(0)
    model, dls = nn.Linear(4, 3), tiny_dls()
    cb = nb_04.MetricsCB(show=False, train_metrics=True)
    learn = nb_04.Learner(model, dls, lr=0., cbs=[nb_04.DeviceCB('cuda'), cb])
    learn.fit(1)
    assert next(model.parameters()).is_cuda and learn.preds.is_cuda
    with torch.no_grad(): preds = model.cpu()(dls.valid.ds.x)
    assert cb.last['valid_loss'] == pytest.approx(F.cross_entropy(preds, dls.valid.ds.y).item(), rel=1e-5)
