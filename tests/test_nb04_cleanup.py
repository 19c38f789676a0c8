"""`cleanup_fit` of `exp.nb_04`'s Learner: the last event of every fit (normal, cancelled or
failed), once, before the fit-time callbacks leave; and `learn.quiet` silencing the printers."""
import pytest
import torch
from torch import nn

from exp import nb_04

pytestmark = pytest.mark.nb04


def tiny_dls(n=6, bs=2):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    return nb_04.get_dls(x, y, x, y, bs, valid_bs=bs)


class Log(nb_04.Callback):
    "Record the fit events, and whether this callback is still in `learn.cbs` at cleanup."
    def __init__(self): self.log = []
    def before_fit(self, learn): self.log.append('before_fit')
    def after_fit(self, learn): self.log.append('after_fit')
    def cleanup_fit(self, learn): self.log.append(('cleanup_fit', self in learn.cbs))


class RaiseIn(nb_04.Callback):
    def __init__(self, event, exc):
        self.exc = exc
        setattr(self, event, self._raise)
    def _raise(self, learn): raise self.exc()


@pytest.mark.parametrize('fit_time', [False, True])
def test_cleanup_fit_once_after_after_fit_in_a_normal_fit(fit_time):
    cb = Log()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=None if fit_time else cb)
    learn.fit(2, cbs=cb if fit_time else None)
    assert cb.log == ['before_fit', 'after_fit', ('cleanup_fit', True)]   # still there, once
    assert (cb in learn.cbs) != fit_time                                 # then a fit-time cb leaves


@pytest.mark.parametrize('event', ['before_fit', 'before_epoch', 'after_batch', 'after_epoch'])
def test_cleanup_fit_once_in_a_cancelled_fit(event):
    cb = Log()
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=cb).fit(
        2, cbs=RaiseIn(event, nb_04.CancelFitException))
    assert cb.log == ['before_fit', 'after_fit', ('cleanup_fit', True)]


@pytest.mark.parametrize('event', ['before_fit', 'before_epoch', 'after_loss', 'after_epoch',
                                   'after_fit'])
def test_cleanup_fit_once_in_a_failing_fit(event):
    cb, learn = Log(), nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    with pytest.raises(ZeroDivisionError): learn.fit(2, cbs=[cb, RaiseIn(event, ZeroDivisionError)])
    assert cb.log.count(('cleanup_fit', True)) == 1 and cb.log[-1] == ('cleanup_fit', True)
    assert ('after_fit' in cb.log) == (event == 'after_fit')   # the failure skipped after_fit
    assert cb not in learn.cbs and len(learn.cbs) == 1        # fit-time callbacks removed


def test_a_fit_refused_before_before_fit_has_no_cleanup():
    cb = Log()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=cb)
    with pytest.raises(ValueError, match='2 TrainCBs'):
        learn.fit(1, cbs=[nb_04.TrainCB(), nb_04.TrainCB()])
    assert cb.log == []


def test_quiet_learner_prints_and_draws_nothing(capsys):
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[nb_04.MetricsCB()])
    learn.fit(1)
    assert capsys.readouterr().out.startswith('epoch 0')
    learn.quiet = True
    learn.fit(2, cbs=nb_04.ProgressCB())
    assert capsys.readouterr().out == ''
    assert len(learn.metrics.history) == 2                   # the numbers are still kept
