"""`Learner` of `exp.nb_04`: the exact event sequence, cancellation of each scope, fit-time
callbacks, the optimiser's life cycle and the state kept on the learner."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from exp import nb_04

pytestmark = [pytest.mark.nb04, pytest.mark.usefixtures("one_thread")]


EVENTS = ('before_fit after_fit before_epoch after_epoch before_batch after_batch predict '
          'after_predict get_loss after_loss backward after_backward step after_step zero_grad '
          'after_cancel_fit after_cancel_epoch after_cancel_batch cleanup_fit').split()


class Recorder(nb_04.Callback):
    "Record every event as 'name' (fit events) or 'name T' / 'name V' (training / validation pass)."
    def __init__(self, order=0):
        self.order, self.log = order, []

    def __getattr__(self, name):
        if name not in EVENTS: raise AttributeError(name)
        def record(learn):
            self.log.append(name if 'fit' in name else f"{name} {'T' if learn.training else 'V'}")
        return record


class RaiseAt(nb_04.Callback):
    "Raise `exc` the `n`-th time (0-based) that `event` fires."
    def __init__(self, event, exc, n=0, order=0):
        self.event, self.exc, self.n, self.order, self.seen = event, exc, n, order, 0

    def __getattr__(self, name):
        if name != self.event: raise AttributeError(name)
        def maybe_raise(learn):
            self.seen += 1
            if self.seen == self.n + 1: raise self.exc()
        return maybe_raise


def tiny_dls(n_train=6, n_valid=4, bs=2):
    g = torch.Generator().manual_seed(0)
    xt, yt = torch.randn(n_train, 4, generator=g), torch.randint(0, 2, (n_train,), generator=g)
    xv, yv = torch.randn(n_valid, 4, generator=g), torch.randint(0, 2, (n_valid,), generator=g)
    return nb_04.get_dls(xt, yt, xv, yv, bs, valid_bs=bs)


def batch_events(p, training):
    steps = ['predict', 'after_predict', 'get_loss', 'after_loss']
    if training: steps += ['backward', 'after_backward', 'step', 'after_step', 'zero_grad']
    return [f'before_batch {p}'] + [f'{s} {p}' for s in steps] + [f'after_batch {p}']


def expected(n_epochs, n_train=3, n_valid=2, train=True, valid=True):
    def epoch(p, n):
        return [f'before_epoch {p}', *batch_events(p, p == 'T') * n, f'after_epoch {p}']
    per_epoch = (epoch('T', n_train) if train else []) + (epoch('V', n_valid) if valid else [])
    return ['before_fit'] + per_epoch * n_epochs + ['after_fit', 'cleanup_fit']


def fit_log(*cbs, n_epochs=1, **kwargs):
    rec = Recorder(order=-1)   # sees each event before the other callbacks
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[rec, *cbs]).fit(n_epochs, **kwargs)
    return rec.log


def test_exact_event_sequence_of_a_two_epoch_fit():
    log = fit_log(n_epochs=2)
    assert log == expected(2)
    assert log.count('before_fit') == 1 and log.count('after_fit') == 1
    assert log.count('before_epoch T') == 2 and log.count('before_epoch V') == 2


@pytest.mark.parametrize('train,valid', [(True, False), (False, True), (False, False)])
def test_train_and_valid_flags(train, valid):
    assert fit_log(n_epochs=2, train=train, valid=valid) == expected(2, train=train, valid=valid)


def test_zero_epochs_fires_only_the_fit_events():
    assert fit_log(n_epochs=0) == ['before_fit', 'after_fit', 'cleanup_fit']


def test_callbacks_run_in_order_ties_in_the_order_given():
    seen = []
    class Tag(nb_04.Callback):
        def __init__(self, name, order): self.name, self.order = name, order
        def before_fit(self, learn): seen.append(self.name)
    cbs = [Tag('c', 5), Tag('a', -3), Tag('b1', 0), Tag('b2', 0)]
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=cbs[:2]).fit(0, cbs=cbs[2:])
    assert seen == ['a', 'b1', 'b2', 'c']


def test_cancel_batch_ends_only_that_batch():
    log = fit_log(RaiseAt('after_predict', nb_04.CancelBatchException, n=1))   # 2nd training batch
    second = log[2 + len(batch_events('T', True)):]
    assert second[:4] == ['before_batch T', 'predict T', 'after_predict T', 'after_cancel_batch T']
    assert second[4] == 'after_batch T'
    assert log.count('step T') == 2 and log.count('after_cancel_batch T') == 1
    assert log.count('before_epoch V') == 1 and log[-2:] == ['after_fit', 'cleanup_fit']


def test_cancel_epoch_ends_only_that_pass():
    log = fit_log(RaiseAt('after_batch', nb_04.CancelEpochException), n_epochs=2)   # 1st batch
    first = ['before_fit', 'before_epoch T', *batch_events('T', True), 'after_cancel_epoch T',
             'after_epoch T', 'before_epoch V']
    assert log[:len(first)] == first
    assert log.count('before_batch T') == 1 + 3       # one batch in epoch 0, all three in epoch 1
    assert log.count('before_batch V') == 2 * 2       # validation untouched
    assert log[-2:] == ['after_fit', 'cleanup_fit']


def test_cancel_epoch_in_validation_keeps_training():
    log = fit_log(RaiseAt('before_epoch', nb_04.CancelEpochException, n=1), n_epochs=2)  # 1st valid
    assert log.count('before_batch V') == 2 and log.count('before_batch T') == 6
    i = log.index('after_cancel_epoch V')
    assert log[i - 1:i + 3] == ['before_epoch V', 'after_cancel_epoch V', 'after_epoch V',
                                'before_epoch T']


def test_cancel_fit_ends_the_fit_and_still_runs_after_fit():
    log = fit_log(RaiseAt('after_epoch', nb_04.CancelFitException), n_epochs=5)
    assert log[-4:] == ['after_epoch T', 'after_cancel_fit', 'after_fit', 'cleanup_fit']
    assert 'before_epoch V' not in log and log.count('before_epoch T') == 1


def test_cancel_fit_from_a_batch():
    log = fit_log(RaiseAt('before_batch', nb_04.CancelFitException, n=2), n_epochs=3)
    assert log[-4:] == ['before_batch T', 'after_cancel_fit', 'after_fit', 'cleanup_fit']
    assert 'after_epoch T' not in log      # the epoch was not ended normally: the fit was


def test_cancel_in_before_fit_skips_every_epoch():
    assert fit_log(RaiseAt('before_fit', nb_04.CancelFitException), n_epochs=3) == \
        ['before_fit', 'after_cancel_fit', 'after_fit', 'cleanup_fit']


def test_other_exceptions_propagate_and_fit_time_cbs_are_removed():
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    boom = RaiseAt('after_loss', ZeroDivisionError)
    with pytest.raises(ZeroDivisionError): learn.fit(1, cbs=[boom, Recorder()])
    assert [type(cb) for cb in learn.cbs] == [nb_04.TrainCB]
    learn.fit(1)                          # and the learner still works
    assert boom.seen == 1


def test_fit_time_cbs_removed_after_a_normal_fit_and_learner_cbs_kept():
    rec, extra = Recorder(), Recorder()
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=rec)
    learn.fit(1, cbs=extra)
    learn.fit(1)
    assert extra.log == expected(1) and rec.log == expected(1) * 2
    assert list(learn.cbs) == [learn.cbs[0], rec] and isinstance(learn.cbs[0], nb_04.TrainCB)


def test_a_traincb_subclass_replaces_the_default_and_two_are_refused():
    class NoStep(nb_04.TrainCB):
        def step(self, learn): pass
    model = nn.Linear(4, 2)
    before = [p.detach().clone() for p in model.parameters()]
    learn = nb_04.Learner(model, tiny_dls(), cbs=NoStep())
    assert [type(cb) for cb in learn.cbs] == [NoStep]
    learn.fit(2)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match='2 TrainCBs'):
        learn.fit(1, cbs=[nb_04.TrainCB(), nb_04.TrainCB()])
    assert [type(cb) for cb in learn.cbs] == [NoStep]
    learn2 = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[nb_04.TrainCB(), nb_04.TrainCB()])
    with pytest.raises(ValueError, match='2 TrainCBs'): learn2.fit(1)


@pytest.mark.parametrize('n', [-1, 1.5, '2', True])
def test_bad_n_epochs(n):
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls())
    with pytest.raises(ValueError, match='n_epochs'): learn.fit(n)


def test_state_lives_on_the_learner():
    seen = {}
    class Peek(nb_04.Callback):
        def after_loss(self, learn):
            if learn.training and learn.iter == 1:
                seen.update(epoch=learn.epoch, iter=learn.iter, n_epochs=learn.n_epochs,
                            bs=len(learn.batch[0]), preds=tuple(learn.preds.shape),
                            loss=learn.loss.dim(), dl=learn.dl is learn.dls.train,
                            training=learn.model.training, opt=learn.opt is not None)
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=Peek())
    learn.fit(1)
    assert seen == dict(epoch=0, iter=1, n_epochs=1, bs=2, preds=(2, 2), loss=0, dl=True,
                        training=True, opt=True)
    assert learn.training is False and learn.model.training is False   # ended on validation


def test_preds_and_loss_reset_before_each_batch():
    seen = []
    class Check(nb_04.Callback):
        order = -1
        def before_batch(self, learn): seen.append((learn.preds, learn.loss))
    nb_04.Learner(nn.Linear(4, 2), tiny_dls(), cbs=Check()).fit(1)
    assert seen and all(p is None and l is None for p, l in seen)


def test_validation_is_in_eval_mode_without_gradients():
    modes = []
    class Peek(nb_04.Callback):
        def after_loss(self, learn):
            modes.append((learn.training, learn.model.training, torch.is_grad_enabled()))
    nb_04.Learner(nn.Sequential(nn.Linear(4, 2), nn.Dropout()), tiny_dls(), cbs=Peek()).fit(1)
    assert set(modes) == {(True, True, True), (False, False, False)}


class SeeLR(nb_04.Callback):
    "The learning rate the optimiser holds at each training step."
    def __init__(self): self.lrs = []
    def after_step(self, learn):
        opt = learn.opt
        self.lrs.append(opt.param_groups[0]['lr'] if hasattr(opt, 'param_groups') else opt.lr)


def test_optimiser_created_once_kept_and_lr_of_one_fit():
    learn = nb_04.Learner(nn.Linear(4, 2), tiny_dls(), lr=0.3, opt_func=torch.optim.SGD)
    assert learn.opt is None
    learn.fit(1)
    opt = learn.opt
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]['lr'] == 0.3
    seen = SeeLR()
    learn.fit(1, lr=0.05, cbs=seen)           # this fit's lr; the learner's stays 0.3
    assert learn.opt is opt and seen.lrs == [0.05] * 3 and opt.param_groups[0]['lr'] == 0.3
    learn.opt = None
    learn.fit(1, lr=0., cbs=seen)             # 0 is a learning rate, not "no learning rate"
    assert learn.opt is not opt and seen.lrs[-3:] == [0.] * 3
    learn.lr = 0.02                           # learn.lr is what a plain fit trains at
    learn.fit(1, cbs=seen)
    assert seen.lrs[-3:] == [0.02] * 3


def test_works_with_nb03_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    learn = nb_04.Learner(model, tiny_dls(), lr=0.1, opt_func=nb_04.Optimizer)
    learn.fit(1)
    assert learn.opt.lr == 0.1
    seen = SeeLR()
    learn.fit(1, lr=0.2, cbs=seen)
    assert seen.lrs == [0.2] * 3 and learn.opt.lr == 0.1 and not torch.equal(before, model.weight)


def test_learner_trains_like_a_plain_loop():
    "Same seed, same batches: the Learner and a hand-written loop end with the same weights."
    dls = tiny_dls(n_train=10, n_valid=4, bs=3)
    results = []
    for use_learner in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        torch.manual_seed(1)                      # the shuffles
        if use_learner: nb_04.Learner(model, dls, lr=0.1).fit(3, valid=False)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(3):
                for xb, yb in dls.train:
                    torch.nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.step(); opt.zero_grad()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results): torch.testing.assert_close(a, b, rtol=0, atol=0)


def public_defs_without_docstring(module):
    "Names of public functions, classes and methods in `module`'s source that lack a docstring."
    import ast, inspect
    tree = ast.parse(inspect.getsource(module))
    return [n.name for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith('_')
            and not ast.get_docstring(n)]


def test_every_public_def_has_a_docstring():
    assert public_defs_without_docstring(nb_04) == []


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.booleans(),
       st.booleans())
def test_event_sequence_for_any_shape_of_fit(n_epochs, n_train, n_valid, bs, train, valid):
    g = torch.Generator().manual_seed(0)
    xt, yt = torch.randn(n_train, 4, generator=g), torch.randint(0, 2, (n_train,), generator=g)
    xv, yv = torch.randn(n_valid, 4, generator=g), torch.randint(0, 2, (n_valid,), generator=g)
    rec = Recorder()
    dls = nb_04.get_dls(xt, yt, xv, yv, bs, valid_bs=bs)
    nb_04.Learner(nn.Linear(4, 2), dls, cbs=rec).fit(n_epochs, train=train, valid=valid)
    n_tb, n_vb = -(-n_train // bs), -(-n_valid // bs)
    assert rec.log == expected(n_epochs, n_tb, n_vb, train=train, valid=valid)
