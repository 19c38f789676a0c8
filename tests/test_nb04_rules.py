"""The Learner's rules (issue 18): when the optimiser is (re)built, what a fit gives back when it
ends, what counts as an event handler, what a cancel exception does in each handler, a TrainCB
given to one fit, and the small pieces (MetricsCB names, numpy epochs, to_device, imports)."""
import ast
import inspect
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from exp import nb_04

pytestmark = [pytest.mark.nb04, pytest.mark.usefixtures("one_thread")]


def tiny_dls(n_train=6, n_valid=4, bs=2):
    g = torch.Generator().manual_seed(0)
    xt, yt = torch.randn(n_train, 4, generator=g), torch.randint(0, 2, (n_train,), generator=g)
    xv, yv = torch.randn(n_valid, 4, generator=g), torch.randint(0, 2, (n_valid,), generator=g)
    return nb_04.get_dls(xt, yt, xv, yv, bs, valid_bs=bs)


def params_of(model): return [p.detach().clone() for p in model.parameters()]


def changed(before, model):
    return all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---- 1. the optimiser: kept across fits, rebuilt for new parameters or a new opt_func ----

def test_a_model_swapped_in_is_trained():
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    learn.fit(1)
    new = nn.Linear(4, 2)
    before = params_of(new)
    learn.model = new
    learn.fit(1)
    assert changed(before, new)
    assert {id(p) for g in learn.opt.param_groups for p in g['params']} == \
        {id(p) for p in new.parameters()}


def test_a_layer_replaced_in_place_is_trained():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    learn = nb_04.Learner(model, tiny_dls())
    learn.fit(1)
    model[2] = nn.Linear(3, 2)                           # a new head, as in fine-tuning
    before = params_of(model[2])
    learn.fit(1)
    assert changed(before, model[2])


def test_the_optimiser_and_its_state_are_kept_when_the_model_is_the_same():
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(),
                          opt_func=lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9))
    learn.fit(1)
    opt, buf = learn.opt, learn.opt.state[learn.model.weight]['momentum_buffer'].clone()
    learn.model = learn.model                           # the same parameters: nothing to rebuild
    learn.fit(1, train=False)
    assert learn.opt is opt and torch.equal(opt.state[learn.model.weight]['momentum_buffer'], buf)


def test_a_new_opt_func_builds_a_new_optimiser():
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    learn.fit(1)
    learn.opt_func = torch.optim.Adam
    assert learn.opt is None
    learn.fit(1)
    assert isinstance(learn.opt, torch.optim.Adam)


def test_two_fits_equal_one_longer_fit():
    "Kept optimiser state: fit(1); fit(1) ends where fit(2) ends (same shuffles, momentum kept)."
    results = []
    for split in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        learn = nb_04.Learner(model, tiny_dls(), lr=0.05,
                              opt_func=lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9))
        if split: learn.fit(1, valid=False); learn.fit(1, valid=False)
        else: learn.fit(2, valid=False)
        results.append(params_of(model))
    for a, b in zip(*results): torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- 2. a fit gives back every hyper-parameter it (or a callback) changed ----

class SetHypers(nb_04.Callback):
    "Set lr, momentum and weight decay before every training batch, as a schedule does."
    def before_batch(self, learn):
        if learn.training:
            for g in learn.opt.param_groups: g.update(lr=0.7, momentum=0.3, weight_decay=0.1)


class Boom(nb_04.Callback):
    def after_step(self, learn): raise ZeroDivisionError


class Stop(nb_04.Callback):
    def after_step(self, learn): raise nb_04.CancelFitException


class SeeHypers(nb_04.Callback):
    order = 100
    def __init__(self): self.seen = []
    def after_step(self, learn):
        g = learn.opt.param_groups[0]
        self.seen.append((g['lr'], g['momentum'], g['weight_decay']))


@pytest.mark.parametrize('end', [None, Boom, Stop])
def test_a_fit_gives_back_the_hyper_parameters(end):
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), lr=0.1,
                          opt_func=lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9))
    cbs = [SetHypers()] + ([end()] if end else [])
    if end is Boom:
        with pytest.raises(ZeroDivisionError): learn.fit(1, cbs=cbs)
    else: learn.fit(1, cbs=cbs)
    g = learn.opt.param_groups[0]
    assert (g['lr'], g['momentum'], g['weight_decay']) == (0.1, 0.9, 0)
    seen = SeeHypers()
    learn.fit(1, cbs=seen)                              # the next plain fit: the learner's values
    assert seen.seen == [(0.1, 0.9, 0)] * 3


# ---- 3. what counts as a handler ----

def test_data_attributes_named_like_events_are_not_handlers():
    class Counter(nb_04.Callback):
        def __init__(self): self.step, self.predict, self.after_batch, self.n = 0, None, 3, 0
        def after_step(self, learn): self.n += 1
    cb = Counter()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=cb)
    learn.fit(2)
    assert cb.n == 6 and (cb.step, cb.predict, cb.after_batch) == (0, None, 3)


def test_a_traincb_whose_step_is_not_a_method_is_refused_clearly():
    class Counting(nb_04.TrainCB):
        def __init__(self): super().__init__(); self.step = 0
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=Counting())
    with pytest.raises(TypeError, match=r'step is not a method'): learn.fit(1)


def test_events_lists_every_event_the_learner_fires():
    seen = set()
    class All(nb_04.Callback):
        def __getattr__(self, name):
            if name.startswith('__'): raise AttributeError(name)
            return lambda learn: seen.add(name)
    class CancelOnce(nb_04.Callback):
        def after_predict(self, learn):
            if learn.iter == 0 and learn.training: raise nb_04.CancelBatchException
        def before_epoch(self, learn):
            if not learn.training and learn.epoch == 0: raise nb_04.CancelEpochException
        def after_epoch(self, learn):
            if learn.epoch == 1: raise nb_04.CancelFitException
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[All(), CancelOnce()]).fit(3)
    assert seen == set(nb_04.EVENTS)


# ---- 4. a cancel exception in each handler ----

class Recorder(nb_04.Callback):
    "Record the events of the fit and epoch scopes, and the batch ends."
    order = 10
    def __init__(self): self.log = []
    def __getattr__(self, name):
        if not any(s in name for s in ('fit', 'epoch', 'after_batch', 'after_cancel_batch')):
            raise AttributeError(name)
        return lambda learn: self.log.append(name if 'fit' in name else
                                             f"{name} {'T' if learn.training else 'V'}")


class RaiseIn(nb_04.Callback):
    "Raise `exc` the first time `event` fires (a low order: the recorder runs after it)."
    order = -5
    def __init__(self, event, exc):
        self.exc, self.done = exc, False
        setattr(self, event, self._raise)
    def _raise(self, learn):
        if not self.done:
            self.done = True
            raise self.exc()


def full_log(n_train=3, n_valid=2):
    def epoch(p, n): return [f'before_epoch {p}', *[f'after_batch {p}'] * n, f'after_epoch {p}']
    return ['before_fit', *epoch('T', n_train), *epoch('V', n_valid), 'after_fit', 'cleanup_fit']


@pytest.mark.parametrize('event,exc', [
    ('after_batch', nb_04.CancelBatchException), ('after_epoch', nb_04.CancelEpochException),
    ('after_fit', nb_04.CancelFitException), ('cleanup_fit', nb_04.CancelFitException)])
def test_a_cancel_in_its_own_after_handler_does_not_escape_and_the_event_goes_on(event, exc):
    rec = Recorder()
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[RaiseIn(event, exc), rec]).fit(1)
    assert rec.log == full_log()               # every handler of that event still ran, once


@pytest.mark.parametrize('event,exc,cancel', [
    ('after_cancel_batch', nb_04.CancelBatchException,
     ('before_batch', nb_04.CancelBatchException)),
    ('after_cancel_epoch', nb_04.CancelEpochException,
     ('before_epoch', nb_04.CancelEpochException)),
    ('after_cancel_fit', nb_04.CancelFitException, ('before_fit', nb_04.CancelFitException))])
def test_a_cancel_in_its_own_after_cancel_handler_does_not_escape(event, exc, cancel):
    rec = Recorder()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[RaiseIn(event, exc), rec])
    learn.fit(1, cbs=RaiseIn(*cancel))
    scope = event.split('_')[-1]
    assert rec.log.count(f'after_cancel_{scope}' + ('' if scope == 'fit' else ' T')) == 1
    assert rec.log[-2:] == ['after_fit', 'cleanup_fit']


def test_an_outer_cancel_in_an_after_handler_ends_the_outer_scope_after_the_event():
    rec = Recorder()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(),
                          cbs=[RaiseIn('after_batch', nb_04.CancelEpochException), rec])
    learn.fit(1)
    assert rec.log[:5] == ['before_fit', 'before_epoch T', 'after_batch T', 'after_cancel_epoch T',
                           'after_epoch T']
    rec2 = Recorder()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(),
                          cbs=[RaiseIn('after_epoch', nb_04.CancelFitException), rec2])
    learn.fit(3)
    assert rec2.log == ['before_fit', 'before_epoch T', *['after_batch T'] * 3, 'after_epoch T',
                        'after_cancel_fit', 'after_fit', 'cleanup_fit']


def test_in_an_after_event_the_outermost_cancel_wins():
    class Both(nb_04.Callback):
        order = -6
        def after_batch(self, learn): raise nb_04.CancelBatchException
    rec = Recorder()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(),
                          cbs=[Both(), RaiseIn('after_batch', nb_04.CancelFitException), rec])
    learn.fit(2)
    assert rec.log == ['before_fit', 'before_epoch T', 'after_batch T', 'after_cancel_fit',
                       'after_fit', 'cleanup_fit']


@pytest.mark.parametrize('event,exc', [
    ('before_fit', nb_04.CancelEpochException), ('before_fit', nb_04.CancelBatchException),
    ('before_epoch', nb_04.CancelBatchException), ('after_epoch', nb_04.CancelBatchException),
    ('after_fit', nb_04.CancelEpochException), ('cleanup_fit', nb_04.CancelBatchException)])
def test_a_cancel_of_a_scope_that_is_not_running_is_a_clear_error(event, exc):
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    with pytest.raises(RuntimeError, match=f'{exc.__name__} raised in {event}'):
        learn.fit(1, cbs=RaiseIn(event, exc))
    assert len(learn.cbs) == 1


# ---- 5. a TrainCB given to one fit; MetricsCB names; epochs; to_device; imports ----

def test_a_traincb_given_to_one_fit_takes_the_step_for_that_fit():
    class NoStep(nb_04.TrainCB):
        def step(self, learn): self.stepped = getattr(self, 'stepped', 0) + 1
    model = nn.Linear(4, 2)
    learn = nb_04.Learner(model, tiny_dls())
    before, own, fit_time = params_of(model), learn.cbs[0], NoStep()
    learn.fit(1, cbs=fit_time)
    assert fit_time.stepped == 3 and not changed(before, model)
    assert list(learn.cbs) == [own]                      # the learner's own is back
    learn.fit(1)
    assert changed(before, model)


def test_metrics_cb_refuses_two_metrics_of_one_name():
    with pytest.raises(ValueError, match="two metrics named 'accuracy'"):
        nb_04.MetricsCB(nb_04.Accuracy(), nb_04.Accuracy())
    with pytest.raises(ValueError, match="two metrics named 'accuracy'"):
        nb_04.MetricsCB(nb_04.Accuracy(), accuracy=nb_04.Accuracy())
    acc = nb_04.Accuracy()
    with pytest.raises(ValueError, match='same metric object'): nb_04.MetricsCB(a=acc, b=acc)
    with pytest.raises(ValueError, match="'loss'"): nb_04.MetricsCB(loss=nb_04.Accuracy())
    cb = nb_04.MetricsCB(acc1=nb_04.Accuracy(), acc2=nb_04.Accuracy(), show=False)
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=cb).fit(1)
    assert cb.last['valid_acc1'] == cb.last['valid_acc2']


@pytest.mark.parametrize('n', [np.int64(2), np.int32(2), torch.tensor(2)])
def test_fit_takes_numpy_and_torch_integers(n):
    seen = []
    class Epochs(nb_04.Callback):
        def after_epoch(self, learn):
            if learn.end_of_epoch: seen.append(learn.epoch)
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=Epochs()).fit(n)
    assert seen == [0, 1]


@pytest.mark.parametrize('n', [2.0, np.float64(2), np.True_, None])
def test_fit_refuses_non_integers_clearly(n):
    with pytest.raises(ValueError, match='n_epochs must be an integer'):
        nb_04.Learner(nn.Linear(4, 2), tiny_dls()).fit(n)


def test_to_device_keeps_namedtuples_and_dict_kinds():
    Pair = namedtuple('Pair', 'x y')
    batch = [Pair(torch.ones(1), 'label'), OrderedDict(a=torch.ones(1)),
             defaultdict(list, b=(torch.ones(1),)), (torch.zeros(1), Pair(torch.ones(2), 3))]
    moved = nb_04.to_device(batch, 'meta')
    assert [type(o) for o in moved] == [Pair, OrderedDict, defaultdict, tuple]
    assert moved[0].x.device.type == 'meta' and moved[0].y == 'label'
    assert moved[2]['b'][0].device.type == 'meta' and moved[2].default_factory is list
    assert type(moved[3][1]) is Pair and moved[3][1].x.device.type == 'meta'


def unused_imports(module):
    "Names that `module` imports (not by `*`) and never uses."
    tree = ast.parse(inspect.getsource(module))
    imported = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.name != '*': imported[(a.asname or a.name).split('.')[0]] = node.lineno
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return sorted(name for name in imported if name not in used)


def test_no_unused_imports():
    assert unused_imports(nb_04) == []
