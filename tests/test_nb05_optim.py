"""Optimisers of `exp.nb_05` against `torch.optim`, step for step; param groups, state dicts, hypers."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

from exp import nb_05

pytestmark = pytest.mark.nb05


@pytest.fixture(autouse=True)
def one_thread():
    "Tiny tensors: one thread is faster, and immune to a busy machine's oversubscription."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def train_both(ours, theirs, steps=100, seed=0, groups=None, **hypers):
    "Train two copies of a small net on the same batches; return both models."
    torch.manual_seed(seed)
    m1 = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    m2 = copy.deepcopy(m1)
    params = (lambda m: m.parameters()) if groups is None else groups
    o1, o2 = ours(params(m1), **hypers), theirs(params(m2), **hypers)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 10, generator=g), torch.randint(0, 3, (16,), generator=g)
        for m, o in ((m1, o1), (m2, o2)):
            F.cross_entropy(m(x), y).backward(); o.step(); o.zero_grad()
    return m1, m2


def max_diff(m1, m2):
    return max((a - b).abs().max().item() for a, b in zip(m1.parameters(), m2.parameters()))


CASES = [
    (nb_05.SGD, optim.SGD, dict(lr=0.1)),
    (nb_05.SGD, optim.SGD, dict(lr=0.1, momentum=0.9)),
    (nb_05.SGD, optim.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    (nb_05.SGD, optim.SGD, dict(lr=0.05, weight_decay=0.01)),
    (nb_05.RMSProp, optim.RMSprop, dict(lr=0.01)),
    (nb_05.RMSProp, optim.RMSprop, dict(lr=1e-3, alpha=0.9, eps=1e-4)),
    (nb_05.Adam, optim.Adam, dict(lr=1e-3)),
    (nb_05.Adam, optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (nb_05.AdamW, optim.AdamW, dict(lr=1e-3)),
    (nb_05.AdamW, optim.AdamW, dict(lr=3e-3, betas=(0.5, 0.9), weight_decay=0.3)),
]


@pytest.mark.parametrize('ours,theirs,hypers', CASES, ids=[f'{c[0].__name__}-{c[2]}' for c in CASES])
def test_matches_torch_after_100_steps(ours, theirs, hypers):
    m1, m2 = train_both(ours, theirs, **hypers)
    assert max_diff(m1, m2) <= 1e-6
    moved = max_diff(m1, nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)))
    assert moved > 1e-3                                    # it really trained


@pytest.mark.parametrize('ours,theirs,hypers', [CASES[2], CASES[7]])
def test_param_groups_match_torch(ours, theirs, hypers):
    groups = lambda m: [{'params': m[0].parameters(), 'lr': hypers['lr'] / 10},
                        {'params': m[2].parameters()}]
    m1, m2 = train_both(ours, theirs, groups=groups, **hypers)
    assert max_diff(m1, m2) <= 1e-6


def test_torch_eps_placement_matters():
    "eps inside the root (a common variant) would not match torch's Adam: the test can fail."
    class AdamEpsInside(nb_05.Adam):
        def _adam_step(self, p, grad, state, lr, betas, eps):
            if not state: state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
            state['step'] += 1
            (b1, b2), m, v = betas, state['m'], state['v']
            m.mul_(b1).add_((1 - b1) * grad); v.mul_(b2).add_((1 - b2) * grad * grad)
            mh, vh = m / (1 - b1 ** state['step']), v / (1 - b2 ** state['step'])
            p.sub_(lr * mh / (vh + eps).sqrt())
    m1, m2 = train_both(AdamEpsInside, optim.Adam, lr=1e-2, eps=1e-4)
    assert max_diff(m1, m2) > 1e-5


def test_state_dict_round_trip():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = nb_05.Adam(model.parameters(), lr=0.1)
    def step():
        F.mse_loss(model(torch.ones(4, 3)), torch.zeros(4, 2)).backward(); opt.step(); opt.zero_grad()
    step()
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), opt.state_dict()
    nb_05.set_hyper(opt, 'lr', 0.5)
    step(); step()
    after_two = [p.detach().clone() for p in model.parameters()]
    model.load_state_dict(saved_model); opt.load_state_dict(saved_opt)
    assert opt.param_groups[0]['lr'] == 0.1 and opt.state[model.weight]['step'] == 1
    nb_05.set_hyper(opt, 'lr', 0.5)
    step(); step()
    assert all(torch.equal(a, b) for a, b in zip(after_two, model.parameters()))
    assert saved_opt['state'][0]['step'] == 1            # the saved copy was not touched


def test_zero_grad_empty_params_and_missing_grads():
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = nb_05.SGD([p, q], lr=1.)
    (p * 3).sum().backward()
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([-2., -2.])) and torch.equal(q.detach(), torch.ones(2))
    opt.zero_grad()
    assert p.grad is None
    with pytest.raises(ValueError, match='empty'): nb_05.Adam(iter([]), lr=0.1)
    (p * 3).sum().backward()
    with pytest.raises(NotImplementedError): nb_05.BaseOptimizer([p], lr=1.).step()


@pytest.mark.parametrize('make', [lambda ps: nb_05.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: nb_05.Adam(ps, lr=0.1), lambda ps: optim.AdamW(ps, lr=0.1)])
def test_get_and_set_hyper(make):
    opt = make([{'params': [torch.zeros(1)]}, {'params': [torch.zeros(1)], 'lr': 1.}])
    nb_05.set_hyper(opt, 'lr', 0.5); nb_05.set_hyper(opt, 'mom', 0.8)
    assert nb_05.get_hyper(opt, 'lr') == 0.5 and nb_05.get_hyper(opt, 'mom') == 0.8
    assert all(g['lr'] == 0.5 for g in opt.param_groups)
    if 'betas' in opt.param_groups[0]: assert opt.param_groups[1]['betas'] == (0.8, 0.999)


def test_hyper_errors():
    with pytest.raises(KeyError, match="'mom'"): nb_05.set_hyper(nb_05.RMSProp([torch.zeros(1)], lr=1.), 'mom', 0.9)
    with pytest.raises(KeyError, match="'beta'"): nb_05.get_hyper(optim.Adam([torch.zeros(1)]), 'beta')
    with pytest.raises(TypeError, match='param_groups'): nb_05.get_hyper(nb_05.Optimizer([torch.zeros(1)], 0.1), 'lr')


def test_l2_equals_weight_decay_only_for_plain_sgd():
    class SGDDecoupled(nb_05.SGD):
        def update(self, p, grad, state, lr, momentum, weight_decay):
            p.mul_(1 - lr * weight_decay)
            super().update(p, grad, state, lr, momentum, 0.)
    assert max_diff(*train_both(nb_05.SGD, SGDDecoupled, lr=0.1, weight_decay=0.1)) <= 1e-6
    assert max_diff(*train_both(nb_05.SGD, SGDDecoupled, lr=0.1, momentum=0.9, weight_decay=0.1)) > 1e-3
    assert max_diff(*train_both(nb_05.Adam, nb_05.AdamW, lr=1e-2, weight_decay=0.1)) > 1e-3


def test_works_in_the_learner():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    dls = nb_05.get_dls(x, y, x, y, 16)
    for opt_func in (nb_05.SGD, nb_05.RMSProp, nb_05.Adam, nb_05.AdamW):
        learn = nb_05.Learner(nn.Linear(4, 2), dls, lr=0.01, opt_func=opt_func,
                              cbs=nb_05.MetricsCB(show=False))
        learn.fit(3)
        assert isinstance(learn.opt, opt_func) and learn.metrics.last['valid_loss'] < 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('ours,theirs,hypers', CASES[1::2], ids=[f'{c[0].__name__}' for c in CASES[1::2]])
def test_matches_torch_on_cuda(ours, theirs, hypers):
    "On CUDA torch uses its multi-tensor (foreach) kernels: the same algorithm, other rounding."
    torch.manual_seed(0)
    m1 = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)).to('cuda')
    m2 = copy.deepcopy(m1)
    o1, o2 = ours(m1.parameters(), **hypers), theirs(m2.parameters(), **hypers)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x, y = torch.randn(16, 10, generator=g).to('cuda'), torch.randint(0, 3, (16,), generator=g).to('cuda')
        for m, o in ((m1, o1), (m2, o2)):
            F.cross_entropy(m(x), y).backward(); o.step(); o.zero_grad()
    assert max_diff(m1, m2) <= 1e-5
