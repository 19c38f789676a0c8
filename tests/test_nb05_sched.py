"""Schedules, the param-scheduler and recorder callbacks, one-cycle and `lr_find` of `exp.nb_05`."""
import copy
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn, optim

from exp import nb_05

pytestmark = [pytest.mark.nb05, pytest.mark.usefixtures("one_thread")]


positions = st.floats(min_value=0., max_value=1.)
values = st.floats(min_value=1e-3, max_value=1e3)


@settings(deadline=None, max_examples=200)
@given(positions, values, values)
def test_schedules_match_closed_forms(pos, start, end):
    lin = start + pos * (end - start)
    assert nb_05.sched_lin(start, end)(pos) == pytest.approx(lin, rel=1e-6, abs=1e-6)
    assert nb_05.sched_cos(start, end)(pos) == pytest.approx(
        end + (start - end) * (1 + math.cos(math.pi * pos)) / 2, rel=1e-6, abs=1e-6)
    assert nb_05.sched_exp(start, end)(pos) == pytest.approx(math.exp(
        math.log(start) + pos * (math.log(end) - math.log(start))), rel=1e-6)
    assert nb_05.sched_no(start, end)(pos) == start


def test_schedule_end_points():
    for sched in (nb_05.sched_lin, nb_05.sched_cos, nb_05.sched_exp):
        assert sched(2., 7.)(0.) == pytest.approx(2.) and sched(2., 7.)(1.) == pytest.approx(7.)
    assert nb_05.sched_cos(0., 1.)(0.5) == pytest.approx(0.5)
    assert nb_05.sched_lin.__name__ == 'sched_lin' and 'Linear' in nb_05.sched_lin.__doc__


@settings(deadline=None, max_examples=200)
@given(positions)
def test_combine_scheds_piecewise(pos):
    f = nb_05.combine_scheds([0.3, 0.5, 0.2], [nb_05.sched_lin(0, 1), nb_05.sched_no(1, 1),
                                               nb_05.sched_cos(1, 0)])
    if pos < 0.3: expected = pos / 0.3
    elif pos < 0.8: expected = 1.
    else: expected = (1 + math.cos(math.pi * (pos - 0.8) / 0.2)) / 2
    assert f(pos) == pytest.approx(expected, abs=1e-6)


def test_combine_scheds_edges_and_errors():
    f = nb_05.combine_scheds([0., 1., 0.],
                             [nb_05.sched_no(5, 5), nb_05.sched_lin(0, 1), nb_05.sched_no(7, 7)])
    assert f(0.) == 0. and f(1.) == pytest.approx(1.) and f(0.25) == pytest.approx(0.25)
    const = nb_05.sched_no(1, 1)
    with pytest.raises(ValueError, match='sum to 1'): nb_05.combine_scheds([0.5, 0.4], [const] * 2)
    with pytest.raises(ValueError, match='sum to 1'): nb_05.combine_scheds([1.5, -0.5], [const] * 2)
    with pytest.raises(ValueError, match='2 pcts but 1'): nb_05.combine_scheds([0.5, 0.5], [const])


def test_one_cycle_scheds():
    s = nb_05.one_cycle_scheds(1., pct_start=0.3, div=10., div_final=100., moms=(0.9, 0.8, 0.95))
    assert s['lr'](0.) == pytest.approx(0.1) and s['lr'](0.3) == pytest.approx(1.)
    assert s['lr'](1.) == pytest.approx(0.01) and s['lr'](0.15) == pytest.approx(0.55)
    assert s['mom'](0.) == pytest.approx(0.9) and s['mom'](0.3) == pytest.approx(0.8)
    assert s['mom'](1.) == pytest.approx(0.95)
    assert set(nb_05.one_cycle_scheds(1., moms=None)) == {'lr'}


def tiny_dls(n=40, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    return nb_05.get_dls(x, y, x[:16], y[:16], bs)


class SeeHypers(nb_05.Callback):
    "Record the lr the optimiser holds when each training batch steps (after the schedulers ran)."
    def __init__(self): self.lrs, self.moms = [], []
    def step(self, learn):
        if learn.training:
            self.lrs.append(nb_05.get_hyper(learn.opt, 'lr'))
            self.moms.append(nb_05.get_hyper(learn.opt, 'mom'))


@pytest.mark.parametrize('opt_func', [nb_05.SGD, optim.SGD, nb_05.Adam, optim.Adam])
def test_param_sched_cb_sets_each_batch(opt_func):
    dls, seen = tiny_dls(), SeeHypers()
    sched = nb_05.sched_lin(0.1, 0.6)
    learn = nb_05.Learner(nn.Linear(4, 2), dls, opt_func=opt_func,
                          cbs=[nb_05.ParamSchedCB('lr', sched),
                               nb_05.ParamSchedCB('mom', nb_05.sched_no(0.7, 0)), seen])
    learn.fit(2)
    total = 2 * len(dls.train)
    assert seen.lrs == pytest.approx([sched(i / total) for i in range(total)])
    assert seen.moms == pytest.approx([0.7] * total)


def test_param_sched_cb_unknown_hyper_fails_before_training():
    learn = nb_05.Learner(nn.Linear(4, 2), tiny_dls(), opt_func=nb_05.RMSProp)
    with pytest.raises(KeyError, match="'mom'"):
        learn.fit(1, cbs=nb_05.ParamSchedCB('mom', nb_05.sched_no(1, 1)))


def test_fit_one_cycle_and_recorder():
    dls = tiny_dls()
    rec = nb_05.RecorderCB('lr', 'mom', 'weight_decay', 'eps')   # SGD has no eps: not recorded
    learn = nb_05.Learner(nn.Linear(4, 2), dls, lr=0.5, opt_func=nb_05.SGD,
                          cbs=[rec, nb_05.MetricsCB(show=False)])
    learn.fit_one_cycle(3, pct_start=0.5)
    n = 3 * len(dls.train)
    s = nb_05.one_cycle_scheds(0.5, pct_start=0.5)
    assert learn.recorder is rec and set(rec.hypers) == {'lr', 'mom', 'weight_decay'}
    assert rec.hypers['lr'] == pytest.approx([s['lr'](i / n) for i in range(n)])
    assert rec.hypers['mom'] == pytest.approx([s['mom'](i / n) for i in range(n)])
    assert len(rec.losses) == n and all(isinstance(l, float) for l in rec.losses)
    assert len(learn.cbs) == 3                             # the schedulers left with the fit
    axs = rec.plot()
    assert len(axs) == 4


def test_lr_find_leaves_model_optimiser_and_rng_as_found():
    torch.manual_seed(0)
    learn = nb_05.Learner(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), tiny_dls(),
                          lr=0.05, opt_func=nb_05.partial(optim.SGD, momentum=0.9))
    learn.fit(1)                                          # an optimiser with momentum buffers
    model_before = copy.deepcopy(learn.model.state_dict())
    opt_before = copy.deepcopy(learn.opt.state_dict())
    rng = torch.get_rng_state()
    lrs, losses = learn.lr_find(num_it=30, plot=False)
    assert len(lrs) == len(losses) > 5
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, model_before[k])
    after = learn.opt.state_dict()
    assert after['param_groups'] == opt_before['param_groups']
    for i, s in opt_before['state'].items():
        assert torch.equal(after['state'][i]['momentum_buffer'], s['momentum_buffer'])
    assert torch.equal(torch.get_rng_state(), rng)
    assert [type(cb) for cb in learn.cbs] == [nb_05.TrainCB]


def test_lr_find_without_optimiser_restores_none_and_ours_too():
    learn = nb_05.Learner(nn.Linear(4, 2), tiny_dls(), opt_func=nb_05.Adam)
    before = copy.deepcopy(learn.model.state_dict())
    learn.lr_find(num_it=10, plot=False)
    assert learn.opt is None
    assert all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())


def test_lr_find_grows_exponentially_and_stops_by_num_it():
    learn = nb_05.Learner(nn.Linear(4, 2), tiny_dls(), opt_func=nb_05.SGD)
    lrs, losses = learn.lr_find(start_lr=1e-5, end_lr=1e-3, num_it=12, plot=False)   # no blow-up
    assert len(lrs) == 12                    # 3 epochs of 5 batches asked for: cancelled at 12
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([100 ** (1 / 12)] * 11)


def test_lr_find_stops_when_the_loss_explodes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    learn = nb_05.Learner(model, tiny_dls(n=400), opt_func=nb_05.SGD)
    lrs, losses = learn.lr_find(start_lr=1e-2, end_lr=1e6, num_it=200, plot=False)
    assert len(lrs) < 200
    assert losses[-1] > 3 * min(losses[:-1]) or math.isnan(losses[-1])
    assert all(l <= 3 * min(losses[:i + 1]) for i, l in enumerate(losses[:-1]))


def test_lr_find_restores_even_when_a_callback_fails():
    class Boom(nb_05.Callback):
        def after_step(self, learn):
            if learn.iter == 2: raise RuntimeError('boom')
    learn = nb_05.Learner(nn.Linear(4, 2), tiny_dls(), cbs=nb_05.MetricsCB(show=False))
    before = copy.deepcopy(learn.model.state_dict())
    with pytest.raises(RuntimeError): learn.lr_find(num_it=10, plot=False, cbs=Boom())
    assert all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())
    assert learn.opt is None and len(learn.cbs) == 2


def test_lr_finder_cb_bad_range():
    with pytest.raises(ValueError, match='start_lr'): nb_05.LRFinderCB(start_lr=1., end_lr=0.1)


def test_importing_the_modules_does_not_import_matplotlib():
    import subprocess, sys
    code = "import sys, exp.nb_05; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'False'
