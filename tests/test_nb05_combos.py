"""Pieces of `exp.nb_05` used together (issue 18): a schedule then a plain fit, `lr_find` on a
learner with callbacks and a fit after it, param groups with extra keys; and the schedules
checked against `torch.optim.lr_scheduler` (issue 19)."""
import copy
import math

import pytest
import torch
from torch import nn, optim

from exp import nb_05

pytestmark = [pytest.mark.nb05, pytest.mark.usefixtures("one_thread")]


def tiny_dls(n=40, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    return nb_05.get_dls(x, y, x[:16], y[:16], bs)


def mlp(): return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class SeeHypers(nb_05.Callback):
    "The lr and momentum the optimiser holds when each training batch steps."
    order = 100
    def __init__(self): self.seen = []
    def step(self, learn):
        if learn.training:
            self.seen.append((nb_05.get_hyper(learn.opt, 'lr'), nb_05.get_hyper(learn.opt, 'mom')))


@pytest.mark.parametrize('opt_func', [nb_05.SGD, optim.SGD, nb_05.Adam, optim.Adam])
def test_a_plain_fit_after_a_schedule_trains_at_the_learners_values(opt_func):
    momentum = dict(betas=(0.8, 0.99)) if 'Adam' in opt_func.__name__ else dict(momentum=0.9)
    learn = nb_05.Learner(mlp(), tiny_dls(), lr=0.1, opt_func=nb_05.partial(opt_func, **momentum))
    learn.fit_one_cycle(1)
    seen = SeeHypers()
    learn.fit(1, cbs=seen)
    mom = 0.8 if 'Adam' in opt_func.__name__ else 0.9
    assert seen.seen == [(0.1, mom)] * 5
    assert (nb_05.get_hyper(learn.opt, 'lr'), nb_05.get_hyper(learn.opt, 'mom')) == (0.1, mom)


def test_a_schedule_cut_short_gives_its_hyper_parameters_back():
    class Boom(nb_05.Callback):
        def after_step(self, learn):
            if learn.iter == 2: raise RuntimeError('boom')
    learn = nb_05.Learner(mlp(), tiny_dls(), lr=0.1,
                          opt_func=nb_05.partial(nb_05.SGD, momentum=0.9))
    with pytest.raises(RuntimeError): learn.fit_one_cycle(2, cbs=Boom())
    assert (nb_05.get_hyper(learn.opt, 'lr'), nb_05.get_hyper(learn.opt, 'mom')) == (0.1, 0.9)
    class Stop(nb_05.Callback):
        def after_step(self, learn):
            if learn.iter == 2: raise nb_05.CancelFitException
    learn.fit_one_cycle(2, lr_max=0.5, cbs=Stop())
    assert (nb_05.get_hyper(learn.opt, 'lr'), nb_05.get_hyper(learn.opt, 'mom')) == (0.1, 0.9)


def learner_with_callbacks(seed=0):
    torch.manual_seed(seed)
    return nb_05.Learner(mlp(), tiny_dls(), lr=0.05,
                         opt_func=nb_05.partial(nb_05.SGD, momentum=0.9),
                         cbs=[nb_05.MetricsCB(show=False), nb_05.ProgressCB(),
                              nb_05.EarlyStopCB(patience=1), nb_05.RecorderCB()])


def test_lr_find_on_a_learner_with_callbacks_leaves_it_as_found():
    learn = learner_with_callbacks()
    learn.quiet = True                                       # no progress bar in the test log
    learn.fit(2)
    history, metrics = copy.deepcopy(learn.metrics.history), learn.metrics
    recorder_losses = list(learn.recorder.losses)
    model = copy.deepcopy(learn.model.state_dict())
    opt, opt_state = learn.opt, copy.deepcopy(learn.opt.state_dict())
    cbs, rng = list(learn.cbs), torch.get_rng_state()
    lrs, losses = learn.lr_find(num_it=12, plot=False)
    assert len(lrs) == len(losses) == 12
    assert learn.metrics is metrics and learn.metrics.history == history
    assert learn.recorder.losses == recorder_losses
    assert all(torch.equal(v, model[k]) for k, v in learn.model.state_dict().items())
    assert learn.opt is opt and learn.opt.state_dict()['param_groups'] == opt_state['param_groups']
    for i, s in opt_state['state'].items():
        assert torch.equal(learn.opt.state_dict()['state'][i]['momentum_buffer'],
                           s['momentum_buffer'])
    assert list(learn.cbs) == cbs and learn.lr == 0.05 and torch.equal(torch.get_rng_state(), rng)


def test_a_fit_after_lr_find_is_the_fit_without_it():
    results = []
    for find in (False, True):
        learn = learner_with_callbacks()
        learn.quiet = True
        if find: learn.lr_find(num_it=12, plot=False)
        learn.fit(2)
        results.append(([p.detach().clone() for p in learn.model.parameters()],
                        learn.metrics.history))
    (pa, ha), (pb, hb) = results
    for a, b in zip(pa, pb): torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ha == hb


def test_lr_find_keeps_the_callbacks_needed_to_train():
    seen = []
    class Flat(nb_05.BatchTransformCB): pass
    tfm = Flat(lambda b: (seen.append(b[0].shape) or b[0], b[1]))
    learn = nb_05.Learner(nn.Linear(4, 2), tiny_dls(), cbs=[nb_05.DeviceCB('cpu'), tfm,
                                                           nb_05.ParamSchedCB('lr', lambda p: 1.)])
    lrs, _ = learn.lr_find(start_lr=1e-4, end_lr=1e-2, num_it=6, plot=False)
    assert len(seen) == 6                                # the transform ran on every batch
    assert lrs[0] == pytest.approx(1e-4)                 # the learner's schedule stood aside


@pytest.mark.parametrize('ours,theirs,hypers', [
    (nb_05.SGD, optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (nb_05.RMSProp, optim.RMSprop, dict(lr=0.01)),
    (nb_05.Adam, optim.Adam, dict(lr=1e-3)),
    (nb_05.AdamW, optim.AdamW, dict(lr=1e-3))])
def test_param_groups_with_extra_keys_step_as_torch_does(ours, theirs, hypers):
    torch.manual_seed(0)
    m1 = mlp()
    m2 = copy.deepcopy(m1)
    groups = lambda m: [{'params': m[0].parameters(), 'name': 'body'},
                        {'params': m[2].parameters(), 'name': 'head', 'lr': hypers['lr'] / 10}]
    o1, o2 = ours(groups(m1), **hypers), theirs(groups(m2), **hypers)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
        for m, o in ((m1, o1), (m2, o2)):
            nn.functional.cross_entropy(m(x), y).backward(); o.step(); o.zero_grad()
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert [g['name'] for g in o1.state_dict()['param_groups']] == ['body', 'head']


def torch_schedule(make_sched, n, **opt_hypers):
    "The lr (and momentum) of each of `n` steps under a torch scheduler."
    opt = optim.SGD([nn.Parameter(torch.zeros(1))], **opt_hypers)
    sched, out = make_sched(opt), []
    for _ in range(n):
        out.append((opt.param_groups[0]['lr'], opt.param_groups[0]['momentum']))
        opt.step(); sched.step()
    return out


@pytest.mark.parametrize('n,pct,div,div_final', [(100, 0.3, 25., 1e5), (57, 0.25, 10., 1e4)])
def test_one_cycle_scheds_equal_torchs_one_cycle_lr(n, pct, div, div_final):
    "Sampled where torch samples (step i of n: pos i/(n-1), the peak at step pct*n-1), the same."
    theirs = torch_schedule(lambda o: optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.5, total_steps=n, pct_start=pct, anneal_strategy='cos', div_factor=div,
        final_div_factor=div_final / div, base_momentum=0.85, max_momentum=0.95), n,
        lr=0.1, momentum=0.9)
    scheds = nb_05.one_cycle_scheds(0.5, pct_start=(pct * n - 1) / (n - 1), div=div,
                                    div_final=div_final, moms=(0.95, 0.85, 0.95))
    ours = [(scheds['lr'](i / (n - 1)), scheds['mom'](i / (n - 1))) for i in range(n)]
    assert [l for l, _ in ours] == pytest.approx([l for l, _ in theirs], rel=1e-9, abs=1e-12)
    assert [m for _, m in ours] == pytest.approx([m for _, m in theirs], rel=1e-9)


def test_param_sched_cb_with_sched_cos_equals_cosine_annealing_lr():
    dls, seen = tiny_dls(), SeeHypers()
    n = 3 * len(dls.train)
    learn = nb_05.Learner(mlp(), dls, opt_func=nb_05.partial(optim.SGD, momentum=0.9),
                          cbs=[nb_05.ParamSchedCB('lr', nb_05.sched_cos(0.2, 0.002)), seen])
    learn.fit(3)
    theirs = torch_schedule(lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=n,
                                                                           eta_min=0.002),
                            n, lr=0.2, momentum=0.9)
    assert [l for l, _ in seen.seen] == pytest.approx([l for l, _ in theirs], rel=1e-9)


def test_l2_with_momentum_decays_about_one_over_one_minus_mu_times_as_strongly():
    "With no loss gradient, the weights shrink ~1/(1-mu) times faster per step with L2 + momentum."
    def shrink(opt_func, steps=200, **hypers):
        p = nn.Parameter(torch.ones(10))
        opt = opt_func([p], lr=0.01, weight_decay=0.1, **hypers)
        for _ in range(steps):
            p.grad = torch.zeros_like(p); opt.step()
        return -math.log(p.norm().item() / math.sqrt(10)) / steps    # decay rate per step
    l2 = shrink(nb_05.SGD, momentum=0.9)
    class Decoupled(nb_05.SGD):
        def update(self, p, grad, state, lr, momentum, weight_decay):
            p.mul_(1 - lr * weight_decay)
            super().update(p, grad, state, lr, momentum, 0.)
    dec = shrink(Decoupled, momentum=0.9)
    assert dec == pytest.approx(-math.log(1 - 0.01 * 0.1), rel=1e-3)
    assert 8 < l2 / dec < 12              # 10.6 over these 200 steps; 11.2 in the limit
