"""The pieces `bench/diffusion.py` and `bench/diffusion_sweep.py` share (v and Min-SNR targets,
`make_learner`), the step spacings, and both scripts' error paths."""
import argparse
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))
import diffusion as bench  # noqa: E402
import diffusion_sweep as sweep  # noqa: E402
from exp import nb_12  # noqa: E402

pytestmark = pytest.mark.nb12


class _Batch:
    "What a callback sees: a batch to rewrite."
    def __init__(self, batch): self.batch = batch


def test_v_target_and_its_inverse():
    s = nb_12.make_schedule('cosine')
    x = torch.rand(16, 784)
    torch.manual_seed(0)
    cb = bench.TargetCB(s, pred='v')
    b = _Batch((x, torch.zeros(16, dtype=torch.long)))
    cb.before_batch(b)
    xt, t, v = b.batch
    a = s.abar[t].float().view(-1, 1, 1, 1)                         # (16, 1, 1, 1)
    x0 = a.sqrt() * xt - (1 - a).sqrt() * v                         # v-prediction's x0
    torch.testing.assert_close(x0, nb_12.to_unit(x), atol=1e-5, rtol=0)

    class TrueV(torch.nn.Module):
        "A perfect v-predictor for these images."
        def __init__(self): super().__init__(); self.p = torch.nn.Parameter(torch.zeros(1))
        def forward(self, x_, t_): return v
    eps = bench.EpsFromV(TrueV(), s)(xt, t)
    torch.testing.assert_close(nb_12.q_sample(nb_12.to_unit(x), t, eps, s), xt, atol=1e-5,
                               rtol=0)
    assert torch.equal(cb.w, torch.ones(16))                        # no weighting asked


def test_min_snr_weights():
    s = nb_12.make_schedule('cosine')
    cb = bench.TargetCB(s, gamma=5.)
    snr = s.snr().float()
    assert (cb.wt <= 1).all() and (cb.wt > 0).all()
    assert torch.equal(cb.wt[snr <= 5], torch.ones(int((snr <= 5).sum())))
    i = int((snr > 5).nonzero()[0])
    assert math.isclose(float(cb.wt[i]), 5 / float(snr[i]), rel_tol=1e-6)


def test_min_snr_weights_for_v():
    s = nb_12.make_schedule('cosine')
    snr = s.snr().float()
    cb = bench.TargetCB(s, pred='v', gamma=5.)
    torch.testing.assert_close(cb.wt, snr.clamp(max=5.) / (snr + 1))    # v's loss: (SNR + 1) x0's
    assert (cb.wt < 1).all()


def test_make_learner_v_lowers_the_loss():
    x = nb_12._quiet_fashion()[0][:512]
    s = nb_12.make_schedule('cosine')
    torch.manual_seed(0)
    model = nb_12.UNet((8, 16), 1)
    y = torch.zeros(len(x), dtype=torch.long)
    dls = nb_12.get_dls(x, y, x[:128], y[:128], 64)
    losses = []

    class Rec(nb_12.Callback):
        def after_batch(self, learn):
            if learn.training: losses.append(learn.loss.item())
    learn = bench.make_learner(model, s, dls, 'v', None, 3e-3, 0.9, False, 'cpu', cbs=[Rec()])
    learn.fit(3)
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8       # 0.71 here
    eps = bench.as_eps(learn.ema_cb.ema, s, 'v')                   # what the samplers see
    assert isinstance(eps, bench.EpsFromV) and not eps.training
    assert nb_12.ddim_sample(eps, s, 4, 3).shape == (4, 1, 28, 28)


def test_quadratic_spacing_is_power_2():
    q = nb_12.ddim_steps(1000, 25, power=2.)                     # the DDIM paper's quadratic
    assert q == (torch.linspace(math.sqrt(999), 0, 25) ** 2).round().long().tolist()
    assert q[0] == 999 and q[-1] == 0 and q[-2] < 10


def test_every_config_fits_the_cpu_budget():
    for name, c in sweep.CONFIGS.items():
        mins = c['epochs'] * sweep.STEPS_PER_EPOCH * sweep.CPU_S_PER_STEP[c['model']] / 60
        assert mins <= sweep.BUDGET_S / 60 + 1e-9, name


@pytest.mark.parametrize('args, msg', [
    (['--load', '/no/such/file.pt'], 'no such file'),
    (['--powers', 'a'], 'take numbers'),
    (['--gamma', '0'], 'must be positive'),
    (['--etas', '0,2'], 'between 0 and 1'),
    (['--etas', '-1', '--samplers', 'dpmpp'], 'is at least 0'),
    (['--etas', 'x'], 'take numbers'),
    (['--attn', '4'], 'levels run from 0 to 3'),
    (['--draws', '0'], 'at least 1'),
    (['--samplers', 'ddim,euler'], 'choose from ddim, dpmpp'),
    (['--samplers', ','], 'choose from ddim, dpmpp'),
    (['--attn', '2', '--heads', '3'], 'must divide the channels'),
])
def test_diffusion_bench_bad_flags_exit_with_one_line(args, msg):
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'diffusion.py'), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and msg in r.stderr and 'Traceback' not in r.stderr


@pytest.mark.parametrize('args, msg', [
    (['--configs', 'nope'], 'unknown --configs'),
    (['--configs', 'A_eps', '--powers', 'x'], 'take numbers'),
    (['--configs', 'A_eps', '--epochs', '0'], 'need at least 1'),
])
def test_sweep_bad_flags_exit_with_one_line(args, msg):
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'diffusion_sweep.py'), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and msg in r.stderr and 'Traceback' not in r.stderr


def _flags(**kw):
    "The model flags `bench/diffusion.py` parses by default, with `kw` changed."
    d = dict(pred='v', nfs='16,32,64,128', n_blocks=1, attn='', heads=2, schedule='cosine')
    return argparse.Namespace(**{**d, **kw})


def test_saved_model_flags_are_checked_on_load(tmp_path):
    w = tmp_path / 'bench_diffusion_x.pt'
    assert bench.model_flags_error(w, _flags()) is None             # no record: trust the flags
    bench.save_model_flags(w, _flags(attn='2,3'))
    assert bench.model_flags_error(w, _flags(attn='2,3')) is None
    assert bench.model_flags_error(w, _flags(attn='2,3', heads=4)) == (
        f"bench/diffusion.py: --load {w} was trained with --heads 2: pass those")
    msg = bench.model_flags_error(w, _flags(pred='eps', nfs='16,32,64'))
    assert '--pred v --nfs 16,32,64,128 --attn 2,3' in msg
    bench.save_model_flags(w, _flags())
    assert bench.model_flags_error(w, _flags(heads=4)) is None      # no attention: heads unused
    assert "--attn ''" in bench.model_flags_error(w, _flags(attn='2'))


def test_load_with_other_flags_exits_with_one_line(tmp_path):
    w = tmp_path / 'bench_diffusion_x.pt'
    w.write_bytes(b'weights')                  # never read: the flags are checked first
    bench.save_model_flags(w, _flags())
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'diffusion.py'), '--load', str(w),
                        '--pred', 'eps'], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'trained with --pred v: pass those' in r.stderr
    assert 'Traceback' not in r.stderr


def test_mean_of_draws():
    draws = [(1., .1, 2.), (2., .2, 4.), (3., .3, 6.)]          # (fid, kid, seconds)
    es = [dict(sampler='ddim', steps=25, n=64, fid=f, kid=k, floor=0.5, ratio=f / 0.5,
               sample_s=s, course_ratio=8.8) for f, k, s in draws]
    assert bench.mean_of_draws(es[:1]) is es[0]                     # one draw: as it was
    e = bench.mean_of_draws(es)
    assert (e['fid'], e['fids'], e['draws'], e['steps']) == (2., [1., 2., 3.], 3, 25)
    assert math.isclose(e['ratio'], 4.)
    assert math.isclose(e['fid_std'], 1.) and math.isclose(e['ratio_std'], 2.)
    assert math.isclose(e['kid'], .2) and math.isclose(e['sample_s'], 4.)


def test_score_names_the_course_figure_it_sits_beside():
    class IE:
        "FID and KID of any samples: fixed numbers."
        def fid(self, s): return 1.
        def kid(self, s): return 0.01
    x = torch.zeros(4, 1, 28, 28)
    for sampler, steps, cs, course in [('ddim', 25, 'ddim', 16.77), ('dpmpp', 25, 'ddim', 16.77),
                                       ('ddpm', 1000, 'ddpm', 3.73), ('dpmpp', 10, 'ddim', None)]:
        e = bench.score(IE(), x, 0.5, sampler, steps, 1.)
        assert (e['sampler'], e['course_sampler'], e['ratio'], e['n']) == (sampler, cs, 2., 4)
        assert e['course_ratio'] == (None if course is None else course / 1.91)
    assert set(bench.SAMPLERS) == {'ddim', 'dpmpp'}
