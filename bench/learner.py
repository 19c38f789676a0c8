"""Time per epoch of the `Learner` (nb_04) with its usual callbacks against 03's `fit`, same model.

    python bench/learner.py                  # full Fashion-MNIST, bs 64, one thread, 9 rounds
    python bench/learner.py --rows 20000 --runs 5 --clock wall
    python bench/learner.py --json_path bench/results/learner.json

One epoch = training on `rows` rows in shuffled batches of `bs` with 03's `Optimizer` (plain
SGD), then validation on the 10,000 test rows in batches of 2*bs, as both loops do. Each setting
trains its own 784-50-10 MLP. The settings take turns (in a new random order each round) for `runs`
rounds after a warm-up round, in this one process; the table gives the median seconds per epoch and
the ratio to 03's `fit` with the same kind of output:

- 03 `fit(progress=True)`   vs  Learner + DeviceCB + MetricsCB + ProgressCB  (the usual set)
- 03 `fit(progress=False)`  vs  Learner + MetricsCB(show=False)              (no display)
- Learner with only its TrainCB: the loop itself, no metrics.

Console output is captured (the terminal's drawing speed is not measured). The default clock is
this process's CPU time (`time.process_time`): on a shared, busy machine the wall clock also counts
the time other processes held the core, which made wall-clock ratios swing between 1.05 and 1.25
from one run to the next while CPU-time ratios stayed within a few percent. Target: the callbacks
cost at most 10% (ratio <= 1.10).
"""
import contextlib
import io
import json
import os
import random
import statistics
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F
from torch import nn

from exp.nb_04 import (DeviceCB, Learner, MetricsCB, Optimizer, ProgressCB, fit, get_dls,
                       get_fashion_mnist, normalize)


def get_model(nh=50):
    "The 784-nh-10 MLP of notebooks 03 and 04."
    return nn.Sequential(nn.Linear(784, nh), nn.ReLU(), nn.Linear(nh, 10))


def fit03(dls, progress, lr):
    "A closure running one epoch of 03's `fit` on its own model and optimiser."
    model = get_model()
    opt = Optimizer(model.parameters(), lr)
    return lambda: fit(1, model, F.cross_entropy, opt, dls.train, dls.valid, progress=progress)


def learner(dls, cbs, lr):
    "A closure running `learn.fit(1)` of a Learner with callbacks `cbs()` on its own model."
    learn = Learner(get_model(), dls, F.cross_entropy, lr=lr, cbs=cbs(), opt_func=Optimizer)
    return lambda: learn.fit(1)


FIT_P, FIT_Q = "03 fit(progress=True)", "03 fit(progress=False)"
LRN_P, LRN_Q = "Learner: Device+Metrics+ProgressCB", "Learner: MetricsCB(show=False)"
LRN_0 = "Learner: TrainCB only"
BASELINE = {LRN_P: FIT_P, LRN_Q: FIT_Q, LRN_0: FIT_Q, FIT_P: FIT_P, FIT_Q: FIT_Q}


def main(rows=60_000, bs=64, lr=0.1, runs=9, threads=1, clock='cpu', json_path=None):
    "Print median seconds per epoch of each loop and its ratio to 03's `fit`, measured in turns."
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    timer = {'wall': time.perf_counter, 'cpu': time.process_time}[clock]
    with contextlib.redirect_stdout(io.StringIO()): xt, yt, xv, yv = get_fashion_mnist()
    mean, std = xt.mean(), xt.std()
    xt, xv = normalize(xt[:rows], mean, std), normalize(xv, mean, std)
    dls = get_dls(xt, yt[:rows], xv, yv, bs)
    print(f"threads: {torch.get_num_threads()} | torch {torch.__version__} | 784-50-10, bs {bs}, "
          f"lr {lr} | Fashion-MNIST: {len(xt):,} training rows, {len(xv):,} validation | {runs} "
          f"rounds after a warm-up | {clock} clock")
    torch.manual_seed(0)
    loops = {FIT_P: fit03(dls, True, lr), FIT_Q: fit03(dls, False, lr),
             LRN_P: learner(dls, lambda: [DeviceCB(), MetricsCB(), ProgressCB()], lr),
             LRN_Q: learner(dls, lambda: [MetricsCB(show=False)], lr),
             LRN_0: learner(dls, lambda: None, lr)}
    times, order = {k: [] for k in loops}, list(loops)
    for r in range(runs + 1):          # round 0 warms up
        random.Random(r).shuffle(order)
        for name in order:
            with contextlib.redirect_stdout(io.StringIO()):
                t0 = timer(); loops[name](); t = timer() - t0
            if r: times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'loop':<38}{'median s/epoch':>15}{'min':>8}{'vs 03 fit':>11}  (baseline)")
    for k, t in med.items():
        ratio = t / med[BASELINE[k]]
        print(f"{k:<38}{t:>15.3f}{min(times[k]):>8.3f}{ratio:>10.3f}x  {BASELINE[k]}")
    ratio_p, ratio_q = med[LRN_P] / med[FIT_P], med[LRN_Q] / med[FIT_Q]
    met = 'met' if max(ratio_p, ratio_q) <= 1.10 else 'NOT met'
    print(f"\ntarget: callbacks cost <= 10%: {ratio_p:.3f}x with progress bars, "
          f"{ratio_q:.3f}x without -> {met}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(
            dict(rows=len(xt), bs=bs, lr=lr, runs=runs, threads=threads, clock=clock,
                 torch=torch.__version__, median_s=med, times_s=times, ratio_progress=ratio_p,
                 ratio_quiet=ratio_q, load_before=load_before, load_after=os.getloadavg()),
            indent=1),
            encoding='utf-8')


if __name__ == '__main__':
    fire.Fire(main)
