#!/usr/bin/env python
"""Which training settings give 12's U-Net the lowest FID for the CPU's 45-minute budget?

    python bench/diffusion_sweep.py --configs cond_3 --steps 25        # one setting, here
    python bench/diffusion_sweep.py --device cuda --configs A_eps,A_v   # on a GPU, in turn
    python bench/diffusion_sweep.py --configs A_eps --smoke            # a check of the script
    python bench/diffusion_sweep.py --configs E_eps,E_v,E_snr5 --epochs 4 --steps 25   # a ranking

`bench/diffusion.py` trains one setting for about 40 minutes on 2 CPU cores; trying each idea that
way costs an hour. This script trains each setting for the number of steps that 2 idle cores of this
machine do in about 42 minutes (measured per model, `CPU_S_PER_STEP`), so the ranking says what a
CPU run can reach; `--epochs K` trains every setting K epochs instead, a cheaper ranking (4 epochs
of `E`, 11 minutes here: DDIM-25 FID / floor 49x with eps, 36x with Min-SNR-5, 23x with v, one seed
each, `bench/results/diffusion_sweep_cpu_4ep.json`; so `bench/diffusion.py` predicts v). `--jobs K`
runs K settings side by side, one process each; on an H200 that gained nothing (these small nets are
launch-bound there: about 60 ms a step alone, 160 ms each with 11 processes sharing the GPU;
`bench/results/diffusion_sweep_cuda.json`). What varies:

- the model: 12's `UNet` with 3 levels x 2 blocks (`A`), 3 levels x 1 (`B`), 4 levels x 1 (`E`);
- what the model predicts: the noise `eps` (DDPM), or `v` = sqrt(abar) eps - sqrt(1-abar) x0
  (Salimans & Ho 2022), turned back into a noise prediction for the samplers;
- the loss weighting: plain, or Min-SNR-gamma (Hang et al. 2023), min(SNR, gamma) / SNR on eps
  (/ (SNR + 1) on v);
- the peak learning rate; and, for `cond_*`, 13's class-conditional U-Net, whose samples are
  scored by the share that 11's classifier gives the asked class.

Every setting seeds before building its model; each scores DDIM at `--steps` (with each spacing in
`--powers`) on `--n` samples of the EMA weights with the same noise, FID against the 60,000 training
images on 11's features, beside the floor (real test images, same n). One JSON line per setting goes
to `--out` as soon as it is done; `--summary` turns the lines into
`bench/results/diffusion_sweep_<device>.json`.
"""
import argparse
import json
import math
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

from exp import nb_13                           # noqa: E402
sys.path.insert(0, str(ROOT / 'bench'))
from diffusion import as_eps, make_learner     # noqa: E402  (v, Min-SNR: shared with it)

# seconds per training step (bs 128, bfloat16 autocast, 2 threads) on this repo's 2-core CPU,
# plus 10% for the Learner's loop, EMA and data (bench/diffusion.py: 0.42 s measured for A)
CPU_S_PER_STEP = {'A': 0.42, 'B': 0.31, 'E': 0.40, 'C8': 0.22}
MODELS = {'A': dict(nfs=(16, 32, 64), n_blocks=2), 'B': dict(nfs=(16, 32, 64), n_blocks=1),
          'E': dict(nfs=(16, 32, 64, 128), n_blocks=1), 'C8': dict(nfs=(8, 16, 32), n_blocks=1)}
BUDGET_S, STEPS_PER_EPOCH = 42 * 60, 469     # 60,000 images in batches of 128
LOGS = Path(tempfile.gettempdir()) / 'diffusion_sweep'    # one log per setting (with --jobs)


def epochs_for(model):
    "Whole epochs that fit the CPU budget for `model`."
    return max(1, int(BUDGET_S / CPU_S_PER_STEP[model] / STEPS_PER_EPOCH))


def cfg(model, pred='eps', gamma=None, lr=2e-3, ema=0.999, cond=False, epochs=None, **kw):
    return dict(model=model, pred=pred, gamma=gamma, lr=lr, ema=ema, cond=cond,
                epochs=epochs or epochs_for(model), **kw)


CONFIGS = {
    'A_eps': cfg('A'), 'A_v': cfg('A', 'v'), 'A_snr5': cfg('A', gamma=5.),
    'A_eps_lr4': cfg('A', lr=4e-3), 'E_eps': cfg('E'), 'E_v': cfg('E', 'v'),
    'E_snr5': cfg('E', gamma=5.), 'E_v_lr4': cfg('E', 'v', lr=4e-3),
    'B_eps': cfg('B'), 'B_v': cfg('B', 'v'),
    # 13's conditional model (8-16-32, attention at 7x7): 1 epoch is the notebook's
    'cond_1': cfg('C8', lr=3e-3, ema=0.995, cond=True, epochs=1),
    'cond_3': cfg('C8', lr=3e-3, ema=0.995, cond=True, epochs=3),
    'cond_3_v': cfg('C8', 'v', lr=3e-3, ema=0.995, cond=True, epochs=3),
    'cond_6': cfg('C8', lr=3e-3, ema=0.995, cond=True, epochs=6),
}


class EpochLogCB(nb_13.Callback):
    "Print the training loss and the time after each epoch."
    order = 90
    def __init__(self, name): self.name, self.t0 = name, time.perf_counter()
    def after_epoch(self, learn):
        if not learn.training: return
        print(f"{self.name} epoch {learn.epoch + 1}: loss {learn.loss.item():.4f}, "
              f"{time.perf_counter() - self.t0:.0f}s", flush=True)


def train(c, x, y, x_valid, y_valid, device, smoke):
    "Train the setting `c`; the EMA model as a noise predictor, and the training seconds."
    sched = nb_13.make_schedule('cosine')
    torch.manual_seed(0)
    m = MODELS[c['model']]
    if c['cond']:
        model = nb_13.CondUNet(10, m['nfs'], m['n_blocks'],
                               attn=partial(nb_13.SelfAttention2d, n_heads=2), attn_levels=(2,))
    else: model = nb_13.UNet(m['nfs'], m['n_blocks'])
    dls = nb_13.get_dls(x, y, x_valid, y_valid, 128)
    cbs = [EpochLogCB(c['name'])] + ([nb_13.DropLabelCB(10, 0.1)] if c['cond'] else [])
    learn = make_learner(model, sched, dls, c['pred'], c['gamma'], c['lr'], c['ema'], True, device,
                         labels=c['cond'], cbs=cbs, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    learn.fit_one_cycle(1 if smoke else c['epochs'], c['lr'], pct_start=0.1)
    if device.type == 'cuda': torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    return as_eps(learn.ema_cb.ema.eval(), sched, c['pred']), sched, train_s, model


def run(name, a, device):
    "Train and score one setting; its JSON line."
    c = dict(CONFIGS[name], name=name)
    if a.epochs: c['epochs'] = a.epochs
    x_train, y_train, x_test, y_test = nb_13._quiet_fashion()
    if a.smoke: x_train, y_train = x_train[:512], y_train[:512]
    ie = nb_13.ImageEval(nb_13.train_fid_classifier(device=device), in_range=(-1., 1.))
    fl = torch.tensor(ie.floor(x_test * 2 - 1, a.n, draws=3)['fid'])
    net, sched, train_s, model = train(c, x_train, y_train, x_test[:512], y_test[:512], device,
                                       a.smoke)
    res = dict(**c, steps_trained=(1 if a.smoke else c['epochs']) * math.ceil(
                   len(x_train) / 128), params=sum(p.numel() for p in model.parameters()),
               cpu_min_est=c['epochs'] * STEPS_PER_EPOCH * CPU_S_PER_STEP[c['model']] / 60,
               train_s=train_s, floor=float(fl.mean()), floor_std=float(fl.std()), n=a.n,
               scores=[])
    powers = [float(v) for v in a.powers.split(',') if v]
    for k in [int(v) for v in a.steps.split(',')]:
        t0 = time.perf_counter()
        if c['cond']:
            for w in (0., 2., 4.):
                s, ys = nb_13.sample_classes(net, sched, a.n // 10, w=w, steps=k, seed=1,
                                             amp=True)
                with torch.no_grad():
                    p = ie.model((s.view(-1, 784).to(device) + 1) / 2).argmax(1).cpu()
                res['scores'].append(dict(sampler='ddim', steps=k, w=w, n=len(ys),
                                          agree=float((p == ys).float().mean()),
                                          fid=ie.fid(s), s=time.perf_counter() - t0))
        else:
            for pw in powers:                       # ddim_steps' spacing: 1 even, < 1 high noise
                t0, g = time.perf_counter(), torch.Generator().manual_seed(0)
                s = nb_13.ddim_sample(net, sched, a.n, k, generator=g, amp=True, power=pw)
                res['scores'].append(dict(sampler='ddim', steps=k, power=pw, fid=ie.fid(s),
                                          kid=ie.kid(s), s=time.perf_counter() - t0,
                                          dark=float((s < -0.99).float().mean())))
        for sc in res['scores']:
            if sc['steps'] != k: continue
            print(f"{name} DDIM {k}" + (f" power {sc['power']:g}" if 'power' in sc else '')
                  + f": FID {sc['fid']:.4f} = {sc['fid'] / res['floor']:.1f}x"
                  + (f", agree {sc['agree']:.1%} at w = {sc['w']:g}" if c['cond'] else ''),
                  flush=True)
    if a.ddpm and not c['cond']:
        t0, g = time.perf_counter(), torch.Generator().manual_seed(0)
        s = nb_13.ddpm_sample(net, sched, a.n, generator=g, amp=True)
        res['scores'].append(dict(sampler='ddpm', steps=sched.T, fid=ie.fid(s), kid=ie.kid(s),
                                  s=time.perf_counter() - t0))
    real = (x_test[:a.n] * 2 - 1)
    res['dark_real'] = float((real < -0.99).float().mean())
    return res


def summary(lines_path, out):
    "Collect the JSON lines into one results file, ranked by DDIM-25 FID / floor."
    runs = [json.loads(v) for v in Path(lines_path).read_text().splitlines() if v.strip()]
    for r in runs:
        for s in r['scores']: s['ratio'] = s['fid'] / r['floor']
    res = dict(script='bench/diffusion_sweep.py', budget_cpu_min=BUDGET_S / 60,
               cpu_s_per_step=CPU_S_PER_STEP, runs=runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.part')
    tmp.write_text(json.dumps(res, indent=1)); os.replace(tmp, out)
    for r in runs:
        cols = []
        for s in r['scores']:
            col = f"{s['sampler']}{s['steps']}" + (f"p{s['power']:g}" if 'power' in s else '')
            col += f"/w{s['w']:g}: {s['agree']:.1%}" if 'agree' in s else ''
            cols.append(f"{col} {s['ratio']:.1f}x")
        print(r['name'], ' '.join(cols))


def parallel(names, a):
    "Each setting in its own process, `a.jobs` at a time, in the order given, until the deadline."
    t_end = time.monotonic() + (a.deadline or 1e9)
    LOGS.mkdir(parents=True, exist_ok=True)
    args = [v for v in sys.argv[1:]]
    for flag in ('--configs', '--jobs', '--deadline'):         # the children get one setting each
        while flag in args: i = args.index(flag); del args[i:i + 2]
    todo, running = list(names), {}
    while todo or running:
        while todo and len(running) < a.jobs and t_end - time.monotonic() > 60:
            name = todo.pop(0)
            log = open(LOGS / f'{name}.log', 'w')
            running[name] = subprocess.Popen([sys.executable, __file__, *args, '--configs', name],
                                             stdout=log, stderr=subprocess.STDOUT)
            print(f"{time.strftime('%H:%M:%S')} started {name}", flush=True)
        if time.monotonic() > t_end: todo = []
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                print(f"{time.strftime('%H:%M:%S')} {name} ended ({proc.returncode})", flush=True)
                del running[name]
            elif time.monotonic() > t_end:
                proc.kill(); proc.wait(); del running[name]
                print(f"{time.strftime('%H:%M:%S')} {name} stopped at the deadline", flush=True)
        if not todo and len(running) == 0: break
        time.sleep(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', default='all', help=f"comma-separated, of {list(CONFIGS)}")
    p.add_argument('--device', default=str(nb_13.def_device))
    p.add_argument('--n', type=int, default=2048)
    p.add_argument('--steps', default='25,50,100')
    p.add_argument('--powers', default='1,0.7', help="DDIM step spacings (ddim_steps's power)")
    p.add_argument('--ddpm', action='store_true')
    p.add_argument('--smoke', action='store_true', help='one epoch of 512 images')
    p.add_argument('--epochs', type=int, default=None,
                   help="train every setting this many epochs (a shorter ranking run)")
    p.add_argument('--out', default='sweep.jsonl', help='JSON lines, one per setting')
    p.add_argument('--summary', default=None, help='write this results file from --out, and stop')
    p.add_argument('--jobs', type=int, default=1, help='settings trained at once, one process each')
    p.add_argument('--deadline', type=float, default=None, help='seconds: stop what runs then')
    a = p.parse_args()
    if a.summary: return summary(a.out, Path(a.summary))
    names = list(CONFIGS) if a.configs == 'all' else a.configs.split(',')
    bad = [v for v in names if v not in CONFIGS]
    if bad: sys.exit(f"bench/diffusion_sweep.py: unknown --configs {bad}; known: {list(CONFIGS)}")
    try: [int(v) for v in a.steps.split(',')] + [float(v) for v in a.powers.split(',') if v]
    except ValueError as e:
        sys.exit(f"bench/diffusion_sweep.py: --steps and --powers take numbers separated by commas "
                 f"({e})")
    if a.epochs is not None and a.epochs < 1:
        sys.exit(f"bench/diffusion_sweep.py: --epochs {a.epochs}: need at least 1")
    if a.jobs > 1 or a.deadline: return parallel(names, a)
    torch.set_num_threads(1 if a.device.startswith('cuda') else torch.get_num_threads())
    device = torch.device(a.device)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    for name in names:
        res = run(name, a, device)
        res.update(device=str(device), commit=commit, torch=torch.__version__,
                   threads=torch.get_num_threads(),
                   machine=platform.processor() or platform.machine(),
                   device_name=torch.cuda.get_device_name(device) if device.type == 'cuda'
                   else None, load=os.getloadavg())
        with open(a.out, 'a') as f: f.write(json.dumps(res) + '\n')


if __name__ == '__main__':
    main()
