#!/usr/bin/env python
"""A longer DDPM run than `12_diffusion` holds: FID / floor per sampler, FID against training time.

    python bench/diffusion.py --threads 2                    # the CPU run: 44 min of training here
    python bench/diffusion.py --device cuda --epochs 60 --nfs 32,64,128 --ddpm   # on a GPU
    python bench/diffusion.py --load ~/.cache/foundations/models/bench_diffusion_<commit>.pt \
        --powers 1,0.7 ...             # score saved weights (its --pred, --nfs, --attn...)
    python bench/diffusion.py --load ... --samplers dpmpp --powers 1 --etas 2 --draws 3

Trains `12_diffusion`'s `UNet` (cosine schedule, EMA of the weights, one-cycle AdamW, bfloat16
autocast on the CPU) on the 60,000 Fashion-MNIST training images with the library's `Learner`, to
predict v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022; `--pred eps`: the noise, as 12
does; `--gamma`: Min-SNR weights). The samplers see a v-model as the noise predictor it implies
(`EpsFromV`). At 4 epochs, v gave DDIM-25 FID / floor 23x against 49x for eps and 36x for eps with
Min-SNR-5 (`diffusion_sweep.py --epochs 4`, one seed each).
After the epochs in `--eval_epochs` it scores DDIM with `--curve_steps` steps on `--n` samples (the
EMA weights), so the JSON holds FID against training minutes. At the end it scores DDIM at each of
`--steps`, with each step spacing in `--powers` (`ddim_steps`: 1 even, 0.7 denser at high noise) and
each `eta` in `--etas` (`--samplers`: DDIM, and/or 12's DPM-Solver++(2M), `dpmpp`, whose eta > 0
is its SDE form), and DDPM's 1,000 steps with `--ddpm`, on `--n` samples (`--draws` noise
draws each: mean and spread), beside the floor: the FID of `--n` real test images (5 draws), all
against the 60,000 training images, on `11_fid`'s classifier features. `--attn` adds 13's
self-attention at the levels it names (with `--gamma 5`, 13 epochs: no gain here,
`diffusion_cpu_attn_snr5.json`). Writes `bench/results/diffusion_<device>.json` (atomically,
after every stage): `runs`, one entry per sampler with `sampler`, `steps`, `power`, `eta`, `n`,
`fid`, `kid`, `floor`, `ratio`, `sample_s`, `course_ratio` of `course_sampler` (the course's DDIM
for ours and for DPM++; with `fids`, `fid_std`, `ratio_std` over `draws`);
`curve`; `params`, `train_s`; settings, machine, load before and after, git commit; and
course22p2's `20_DDIM` figures for the same samplers. The weights are saved with their flags
(a `.json` beside them), which `--load` checks.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch                                    # noqa: E402

from exp import nb_12, nb_13                    # noqa: E402  (13: `SelfAttention2d`)


class TargetCB(nb_12.Callback):
    "Each batch (x, y) -> (x_t, t, [y,] target): target eps or v; `w`: each image's loss weight."
    order, needed_to_train = -10, True
    def __init__(self, sched, pred='eps', gamma=None, labels=False):
        self.sched, self.pred, self.gamma, self.labels = sched, pred, gamma, labels
        snr = sched.snr().float()
        # Min-SNR: eps loss x min(SNR, gamma) / SNR; v's loss is (SNR + 1) x x0's
        if gamma is None: self.wt = torch.ones_like(snr)
        else: self.wt = snr.clamp(max=gamma) / (snr + 1 if pred == 'v' else snr)
    def before_batch(self, learn):
        "Noise each image at a random step; the target is its noise, or v."
        x0, y = nb_12.to_unit(learn.batch[0]), learn.batch[1]
        t = torch.randint(0, self.sched.T, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        xt = nb_12.q_sample(x0, t, eps, self.sched)
        a = self.sched.abar[t.cpu()].float().to(x0.device).view(-1, 1, 1, 1)   # (bs, 1, 1, 1)
        targ = eps if self.pred == 'eps' else a.sqrt() * eps - (1 - a).sqrt() * x0
        self.w = self.wt[t.cpu()].to(x0.device)
        learn.batch = (xt, t, y, targ) if self.labels else (xt, t, targ)


class EpsFromV(torch.nn.Module):
    "A v-predicting model seen as a noise predictor: eps = sqrt(abar) v + sqrt(1-abar) x_t."
    def __init__(self, model, sched):
        super().__init__(); self.model, self.sched = model, sched
        self.n_classes = getattr(model, 'n_classes', None)
    def forward(self, x, t, *cond):
        a = self.sched.abar[t.cpu()].float().to(x.device).view(-1, 1, 1, 1)    # (bs, 1, 1, 1)
        return a.sqrt() * self.model(x, t, *cond).float() + (1 - a).sqrt() * x


def make_learner(model, sched, dls, pred='v', gamma=None, lr=2e-3, ema=0.999, amp=True,
                 device=nb_12.def_device, labels=False, cbs=(), dtype=None):
    "A `Learner` that trains `model` to predict eps or v (Min-SNR-`gamma` weights); `.ema_cb`."
    tcb, ema_cb = TargetCB(sched, pred, gamma, labels), nb_12.EMACB(ema)
    def loss(preds, targ):
        "Mean squared error, each image weighted by `tcb.w`."
        return ((preds.float() - targ) ** 2).mean((1, 2, 3)).mul(tcb.w).mean()
    n_inp = 3 if labels else 2
    step = nb_12.MixedPrecisionCB(n_inp, dtype) if amp else nb_12.TrainCB(n_inp)
    learn = nb_12.Learner(model, dls, loss, lr=lr, opt_func=partial(nb_12.AdamW, weight_decay=0.),
                          cbs=[nb_12.DeviceCB(device), tcb, step, ema_cb, *cbs])
    learn.quiet, learn.ema_cb = True, ema_cb
    return learn


def as_eps(net, sched, pred):
    "The samplers' noise predictor: `net` itself, or its v seen as eps."
    return EpsFromV(net, sched).eval() if pred == 'v' else net

# course22p2 `20_DDIM`: a 15.9M-parameter U-Net trained on a GPU; FID at n = 2,048, floor 1.91
COURSE = dict(floor=1.91, params=15.9e6, runs={('ddpm', 1000): 3.73, ('ddim', 100): 8.44,
                                               ('ddim', 50): 11.15, ('ddim', 25): 16.77})


# the samplers `--samplers` can name, called as f(model, sched, n, steps, eta, generator=,
# amp=, power=)
SAMPLERS = dict(ddim=nb_12.ddim_sample, dpmpp=nb_12.dpmpp_sample)


def write_json(res, path):
    "Write `res` to `path` through a temporary file: complete or not at all."
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.part')
    with os.fdopen(fd, 'w') as f: json.dump(res, f, indent=1)
    os.replace(tmp, path)


MODEL_FLAGS = ('pred', 'nfs', 'n_blocks', 'attn', 'heads', 'schedule')


def save_model_flags(path, a):
    "Beside the weights in `path`, the flags that built and trained them (a `.json`)."
    write_json({k: getattr(a, k) for k in MODEL_FLAGS}, Path(path).with_suffix('.json'))


def model_flags_error(path, a):
    "One line if the flags saved beside the weights `path` differ from `a`'s; else None."
    try: saved = json.loads(Path(path).with_suffix('.json').read_text())
    except (FileNotFoundError, json.JSONDecodeError): return None   # older weights: trust flags
    keys = [k for k in MODEL_FLAGS if k in saved and (k != 'heads' or saved.get('attn'))]
    diff = [f"--{k} {saved[k] if saved[k] != '' else repr('')}" for k in keys
            if saved[k] != getattr(a, k)]
    return (f"bench/diffusion.py: --load {path} was trained with {' '.join(diff)}: pass those"
            if diff else None)


def score(ie, samples, floor, sampler, steps, sample_s):
    "One `runs` entry: FID, KID and the ratio to the floor, beside the course's ratio."
    fid, kid = ie.fid(samples), ie.kid(samples)
    cs = 'ddim' if sampler == 'dpmpp' else sampler     # the course scored no DPM-Solver
    course = COURSE['runs'].get((cs, steps))
    return dict(sampler=sampler, steps=steps, n=len(samples), fid=fid, kid=kid, floor=floor,
                ratio=fid / floor, sample_s=sample_s, course_sampler=cs,
                course_ratio=None if course is None else course / COURSE['floor'])


def mean_of_draws(es):
    "One `runs` entry from the entries `es` of several noise draws: means, spreads, each FID."
    if len(es) == 1: return es[0]
    fids = torch.tensor([e['fid'] for e in es], dtype=torch.float64)
    mean = lambda k: sum(e[k] for e in es) / len(es)
    return dict(es[0], fid=float(fids.mean()), fid_std=float(fids.std()), fids=fids.tolist(),
                kid=mean('kid'), ratio=float(fids.mean()) / es[0]['floor'],
                ratio_std=float(fids.std()) / es[0]['floor'], sample_s=mean('sample_s'),
                draws=len(es))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default=str(nb_12.def_device))
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: all)')
    p.add_argument('--nfs', default='16,32,64,128', help='channels per level of the U-Net')
    p.add_argument('--n_blocks', type=int, default=1)
    p.add_argument('--attn', default='', help="levels with 13's self-attention (e.g. 2,3; none)")
    p.add_argument('--heads', type=int, default=2, help='attention heads')
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--ema', type=float, default=0.999)
    p.add_argument('--pred', default='v', choices=['v', 'eps'], help='what the U-Net predicts')
    p.add_argument('--gamma', type=float, default=None, help='Min-SNR-gamma loss weights')
    p.add_argument('--schedule', default='cosine', choices=['cosine', 'linear'])
    p.add_argument('--no_amp', action='store_true', help='float32 throughout')
    p.add_argument('--n', type=int, default=2048, help='samples per FID')
    p.add_argument('--steps', default='100,50,25', help='DDIM step counts scored at the end')
    p.add_argument('--samplers', default='ddim', help="scored at each of --steps: ddim, and "
                   "dpmpp (12's DPM-Solver++(2M); eta > 0: its SDE form)")
    p.add_argument('--powers', default='1,0.7',
                   help="DDIM step spacings scored (ddim_steps's power)")
    p.add_argument('--etas', default='0', help="eta values scored (0 deterministic; DDIM's 1 as "
                   "DDPM, at most 1; dpmpp's any >= 0, 2 scored best here)")
    p.add_argument('--draws', type=int, default=1,
                   help='noise draws per sampler (seeds 0, 1, ...): FID mean and spread')
    p.add_argument('--ddpm', action='store_true', help="also DDPM's 1,000 steps (GPU time)")
    p.add_argument('--load', default=None, help='score the EMA weights this script saved (a .pt) '
                   'instead of training; the --out JSON keeps its training record')
    p.add_argument('--eval_epochs', default='5,10', help='epochs after which to score the curve')
    p.add_argument('--curve_steps', type=int, default=25)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n_train', type=int, default=None, help='first n training images (smoke runs)')
    p.add_argument('--out', default=None)
    a = p.parse_args()
    try:
        nfs = tuple(int(v) for v in a.nfs.split(','))
        steps = [int(v) for v in a.steps.split(',') if v]
        powers = [float(v) for v in a.powers.split(',') if v]
        etas = [float(v) for v in a.etas.split(',') if v]
        eval_epochs = {int(v) for v in a.eval_epochs.split(',') if v}
        attn = tuple(int(v) for v in a.attn.split(',') if v)
        samplers = [v for v in a.samplers.split(',') if v]
    except ValueError as e:
        sys.exit(f"bench/diffusion.py: --nfs, --attn, --steps, --eval_epochs, --powers and --etas "
                 f"take numbers separated by commas ({e})")
    if any(not 0 <= v < len(nfs) for v in attn):
        sys.exit(f"bench/diffusion.py: --attn {a.attn}: levels run from 0 to {len(nfs) - 1} "
                 f"(--nfs {a.nfs})")
    if attn and (a.heads < 1 or any(nfs[v] % a.heads for v in attn)):
        sys.exit(f"bench/diffusion.py: --heads {a.heads} must divide the channels of every "
                 f"--attn level ({[nfs[v] for v in attn]})")
    if any(not v >= 0 for v in etas) or ('ddim' in samplers and any(v > 1 for v in etas)):
        sys.exit(f"bench/diffusion.py: --etas {a.etas}: DDIM's eta lies between 0 and 1, "
                 "DPM++'s (--samplers dpmpp) is at least 0")
    if not samplers or any(v not in SAMPLERS for v in samplers):
        sys.exit(f"bench/diffusion.py: --samplers {a.samplers}: choose from {', '.join(SAMPLERS)}"
                 " (DDPM: --ddpm)")
    if a.draws < 1: sys.exit(f"bench/diffusion.py: --draws {a.draws}: at least 1")
    if a.gamma is not None and not a.gamma > 0:
        sys.exit(f"bench/diffusion.py: --gamma {a.gamma}: Min-SNR's gamma must be positive")
    if a.load and not Path(a.load).expanduser().is_file():
        sys.exit(f"bench/diffusion.py: --load {a.load}: no such file")
    if a.load and (err := model_flags_error(Path(a.load).expanduser(), a)): sys.exit(err)
    if a.threads: torch.set_num_threads(a.threads)
    device, amp = torch.device(a.device), not a.no_amp
    out = Path(a.out or ROOT / 'bench' / 'results' / f'diffusion_{device.type}.json')
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    res = dict(device=str(device), machine=platform.processor() or platform.machine(),
               device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
               torch=torch.__version__, threads=torch.get_num_threads(), commit=commit,
               load_before=os.getloadavg(), settings=vars(a), course=dict(
                   floor=COURSE['floor'], params=COURSE['params'],
                   runs=[dict(sampler=s, steps=k, fid=v, ratio=v / COURSE['floor'])
                         for (s, k), v in COURSE['runs'].items()]),
               curve=[], runs=[])
    x_train, _, x_test, _ = nb_12._quiet_fashion()
    if a.n_train: x_train = x_train[:a.n_train]
    ie = nb_12.ImageEval(nb_12.train_fid_classifier(device=device), in_range=(-1., 1.))
    fl = torch.tensor(ie.floor(x_test * 2 - 1, a.n, draws=5)['fid'])
    floor = float(fl.mean())
    res['floor'] = dict(n=a.n, draws=5, fid_mean=floor, fid_std=float(fl.std()))
    print(f"floor at n={a.n}: {floor:.4f} ± {float(fl.std()):.4f}", flush=True)

    torch.manual_seed(a.seed)
    model = nb_12.UNet(nfs, a.n_blocks, attn=partial(nb_13.SelfAttention2d, n_heads=a.heads),
                       attn_levels=attn)
    res['params'] = sum(p.numel() for p in model.parameters())
    sched = nb_12.make_schedule(a.schedule)
    if a.load: ema = load_trained(model, sched, a, res, out, device)
    else: ema = train(model, sched, a, res, out, ie, floor, x_train, x_test, eval_epochs, amp,
                      device, commit)
    key = lambda r: (r['sampler'], r['steps'], r.get('power') or 1., r.get('eta') or 0.)
    todo = [(sp, k, pw, eta) for sp in samplers for k in steps for pw in powers for eta in etas]
    todo += [('ddpm', sched.T, None, None)] if a.ddpm else []
    for sampler, k, pw, eta in todo:
        es = []
        for d in range(a.draws):                   # noise draw d: the generator's seed
            t0, g = time.perf_counter(), torch.Generator().manual_seed(d)
            if sampler == 'ddpm': s = nb_12.ddpm_sample(ema, sched, a.n, generator=g, amp=amp)
            else: s = SAMPLERS[sampler](ema, sched, a.n, k, eta, generator=g, amp=amp, power=pw)
            es.append(score(ie, s, floor, sampler, k, time.perf_counter() - t0))
        e = dict(mean_of_draws(es), power=pw, eta=eta)
        res['runs'] = [r for r in res['runs'] if key(r) != key(e)] + [e]
        c = (f"course {e['course_sampler'].upper()} {e['course_ratio']:.1f}x"
             if e['course_ratio'] else '')
        sp = '' if pw in (None, 1.) else f' (power {pw:g})'
        sp += '' if eta in (None, 0.) else f' (eta {eta:g})'
        sd = f" ± {e['ratio_std']:.2f} ({a.draws} draws)" if a.draws > 1 else ''
        print(f"{sampler.upper()} {k}{sp}: FID {e['fid']:.4f}, KID {e['kid']:.5f}: "
              f"{e['ratio']:.2f}x{sd} floor ({c}), {e['sample_s']:.0f}s a draw", flush=True)
        if (sampler == 'ddim' and k == a.curve_steps and pw == 1. and eta == 0. and not a.load
                and a.epochs not in eval_epochs):
            res['curve'].append(dict(epoch=a.epochs, train_min=res['train_s'] / 60, **e))
        res['load_after'] = os.getloadavg()
        write_json(res, out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def load_trained(model, sched, a, res, out, device):
    "The EMA weights in `a.load` in `model`; `res` takes the training record from `out`."
    try: model.load_state_dict(nb_12.load_state(Path(a.load).expanduser()))
    except (RuntimeError, ValueError, OSError) as e:
        sys.exit(f"bench/diffusion.py: --load {a.load} is not a U-Net of --nfs {a.nfs} "
                 f"--n_blocks {a.n_blocks} --attn '{a.attn}' ({str(e).splitlines()[0]})")
    try: old = json.loads(out.read_text())
    except (FileNotFoundError, json.JSONDecodeError): old = {}
    res.update(score_settings=dict(res['settings']), score_load_before=res['load_before'])
    for k in ('train_s', 'curve', 'runs', 'load_before', 'settings', 'commit', 'threads'):
        if k in old: res[k] = old[k]
    res['scored_from'] = str(a.load)
    return as_eps(model.to(device).eval(), sched, a.pred)


def train(model, sched, a, res, out, ie, floor, x_train, x_test, eval_epochs, amp, device,
          commit):
    "Train `model` as `a` says, scoring the curve after `eval_epochs`; its EMA model, saved."
    clock = dict(train=0., t0=None)

    class CurveCB(nb_12.Callback):
        "Time the training epochs; after those in `eval_epochs`, score DDIM on the EMA weights."
        order = 80
        def before_epoch(self, learn):
            if learn.training: clock['t0'] = time.perf_counter()
        def after_epoch(self, learn):
            if not learn.training: return
            clock['train'] += time.perf_counter() - clock['t0']
            ep = learn.epoch + 1
            print(f"epoch {ep}: loss {learn.loss.item():.4f}, {clock['train'] / 60:.1f} min",
                  flush=True)
            if ep not in eval_epochs: return
            t0 = time.perf_counter()
            s = nb_12.ddim_sample(as_eps(learn.ema_cb.ema, sched, a.pred), sched, a.n,
                                  a.curve_steps, amp=amp,
                                  generator=torch.Generator().manual_seed(1))
            e = score(ie, s, floor, 'ddim', a.curve_steps, time.perf_counter() - t0)
            res['curve'].append(dict(epoch=ep, train_min=clock['train'] / 60, **e))
            print(f"  DDIM {a.curve_steps}: FID {e['fid']:.4f} = {e['ratio']:.1f}x floor",
                  flush=True)
            write_json(res, out)

    no_y = [torch.zeros(len(v), dtype=torch.long) for v in (x_train, x_test[:1024])]
    dls = nb_12.get_dls(x_train, no_y[0], x_test[:1024], no_y[1], a.bs)
    learn = make_learner(model, sched, dls, a.pred, a.gamma, a.lr, a.ema, amp, device,
                         cbs=[CurveCB()])
    learn.fit_one_cycle(a.epochs, a.lr, pct_start=0.1)
    res['train_s'] = clock['train']
    ema = learn.ema_cb.ema
    path = nb_12.data_dir() / 'models' / f'bench_diffusion_{commit}.pt'
    nb_12.save_state(ema.state_dict(), path)
    save_model_flags(path, a)
    print(f"EMA weights saved in {path} (score them again with --load)", flush=True)
    return as_eps(ema, sched, a.pred)


if __name__ == '__main__':
    main()
