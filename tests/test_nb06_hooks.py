"Hook, Hooks and ActivationStats of exp.nb_06: hooks always removed, statistics right."
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from exp import nb_06

pytestmark = pytest.mark.nb06


def n_forward_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def record(hook, mod, inp, out):
    hook.calls = getattr(hook, 'calls', 0) + 1
    hook.last = out


def test_hook_records_and_removes():
    lin = nn.Linear(3, 2)
    with nb_06.Hook(lin, record) as h:
        out = lin(torch.randn(5, 3))
        assert h.calls == 1 and h.last is out and h.module is lin
    assert n_forward_hooks(lin) == 0
    lin(torch.randn(5, 3))
    assert h.calls == 1                       # no more calls once removed
    h.remove()                                # twice is fine


def test_hooks_remove_every_hook_on_exit():
    model = nb_06.cnn_model()
    mods = list(model.modules())
    with nb_06.Hooks(mods, record) as hooks:
        assert len(hooks) == len(mods) and n_forward_hooks(model) == len(mods)
        model(torch.randn(2, 1, 28, 28))
        assert all(h.calls == 1 for h in hooks) and hooks[0].module is mods[0]
    assert n_forward_hooks(model) == 0


def test_hooks_removed_when_the_body_raises():
    model = nb_06.cnn_model()
    with pytest.raises(RuntimeError):
        with nb_06.Hooks(model.modules(), record):
            model(torch.randn(2, 3, 28, 28))      # 3 channels for a 1-channel model
    assert n_forward_hooks(model) == 0
    with pytest.raises(KeyError):
        with nb_06.Hook(model[0], record):
            raise KeyError('boom')
    assert n_forward_hooks(model) == 0


def test_hooks_removed_when_registering_fails():
    model = nb_06.cnn_model()
    with pytest.raises(AttributeError):
        nb_06.Hooks([model[0], model[1], 'not a module'], record)
    assert n_forward_hooks(model) == 0


def fake_learn(model): return SimpleNamespace(model=model)


def test_activation_stats_records_training_batches_only():
    torch.manual_seed(0)
    model = nb_06.cnn_model(act=lambda: nb_06.GeneralRelu(leak=0.1, sub=0.4))
    cb = nb_06.ActivationStats()
    learn = fake_learn(model)
    cb.before_fit(learn)
    assert n_forward_hooks(model) == 4               # the 4 activations
    model.train()
    xs = [torch.randn(16, 1, 28, 28) for _ in range(3)]
    for x in xs: model(x)
    model.eval()
    model(torch.randn(16, 1, 28, 28))                # not recorded
    cb.after_fit(learn)
    assert n_forward_hooks(model) == 0
    for name in ('mean', 'std', 'dead'):
        assert [len(v) for v in cb.stats(name)] == [3] * 4
    hists = cb.stats('hist')
    assert [h.shape for h in hists] == [(40, 3)] * 4
    # the first layer's records, recomputed directly
    pre = model[0][0](xs[-1])
    act = model[0][1](pre)
    assert cb.stats('mean')[0][-1] == pytest.approx(act.mean().item(), rel=1e-5)
    assert cb.stats('std')[0][-1] == pytest.approx(act.std().item(), rel=1e-5)
    assert cb.stats('dead')[0][-1] == pytest.approx((pre <= 0).float().mean().item())
    assert torch.equal(hists[0][:, -1], act.detach().histc(40, -1., 9.))
    # a second fit starts afresh
    cb.before_fit(learn)
    model.train(); model(xs[0]); cb.after_fit(learn)
    assert [len(v) for v in cb.stats('mean')] == [1] * 4


def test_activation_stats_filters_and_errors():
    model = nb_06.cnn_model()
    cb = nb_06.ActivationStats(nn.Conv2d)             # a type works as the filter
    cb.before_fit(fake_learn(model))
    assert n_forward_hooks(model) == 5
    cb.after_fit(fake_learn(model))
    with pytest.raises(ValueError, match='nothing recorded'): nb_06.ActivationStats().stats('mean')
    with pytest.raises(ValueError, match='no module'):
        nb_06.ActivationStats(nn.LSTM).before_fit(fake_learn(model))


def test_activation_stats_before_fit_drops_hooks_of_a_fit_that_raised():
    model = nb_06.cnn_model()
    cb = nb_06.ActivationStats()
    cb.before_fit(fake_learn(model))                  # then the fit raises: no after_fit
    cb.before_fit(fake_learn(model))
    assert n_forward_hooks(model) == 4                # not 8
    cb.after_fit(fake_learn(model))
    assert n_forward_hooks(model) == 0


def test_activation_stats_plots_return_axes():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    model = nb_06.cnn_model()
    cb = nb_06.ActivationStats()
    cb.before_fit(fake_learn(model))
    model.train()
    for _ in range(2): model(torch.randn(4, 1, 28, 28))
    cb.after_fit(fake_learn(model))
    assert len(cb.plot_stats()) == 2
    assert len(cb.color_dim()) == 4
    assert cb.dead_chart().get_ylim() == (0, 1)
    plt.close('all')


def test_activation_stats_with_the_learner():
    "A real fit: one record per training batch, none for validation, no hook left afterwards."
    torch.manual_seed(0)
    x, y = torch.randn(96, 1, 28, 28), torch.randint(0, 10, (96,))
    dls = nb_06.DataLoaders.from_dsets(nb_06.Dataset(x, y), nb_06.Dataset(x[:40], y[:40]), bs=32)
    model = nb_06.cnn_model(act=lambda: nb_06.GeneralRelu(0.1, 0.4))
    cb = nb_06.ActivationStats()
    learn = nb_06.Learner(model, dls, lr=0.01, cbs=[nb_06.MetricsCB(show=False), cb])
    learn.fit(2)
    assert [len(v) for v in cb.stats('std')] == [2 * 3] * 4       # 2 epochs of 3 training batches
    assert n_forward_hooks(model) == 0

    class Boom(nb_06.Callback):
        def after_batch(self, learn): raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, cbs=[Boom()])
    learn.fit(1)                                     # the stale hooks are dropped first
    assert n_forward_hooks(model) == 0 and [len(v) for v in cb.stats('std')] == [3] * 4
