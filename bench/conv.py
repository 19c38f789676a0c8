"""Our `conv2d` (exp.nb_06) against `F.conv2d`, forward + backward, on the lesson CNN's shapes.

    python bench/conv.py                  # bs 256, 1 thread, 31 interleaved rounds, wall clock
    python bench/conv.py --rounds 51 --bs 1024 --threads 2
    python bench/conv.py --clock cpu      # this thread's CPU time: steadier on a busy machine
    python bench/conv.py --clock cpu --save bench/results/conv.json   # what 06 shows

Variants, each doing one forward and one backward (the gradients of x, w and b; x needs none in the
first layer, whose input is the image, as in training):
  F.conv2d  torch's convolution (oneDNN on CPU: a direct convolution, no patch matrix)
  unfold    the plain version: `F.unfold` (n, c*kh*kw, L), a batched `w @ cols`, bias added, a
            view; autograd does the backward (`col2im`, and a batched matmul for w's gradient)
  ours      `nb_06.conv2d`: channels-last patches taken by `as_strided` and copied once into an
            (n*oh*ow, kh*kw*c) matrix, one `addmm` with the weight as (kh*kw*c, o); its backward
            is two matmuls, a sum for the bias and `col2im`, a scatter-add of kh*kw strided slices
The shapes are the five stride-2 3x3 convolutions of `nb_06.cnn_model()` (28 -> 14 -> 7 -> 4 -> 2
-> 1). GFLOP/s counts a multiply-add of the matmuls as 2 flops: forward 2*n*oh*ow*o*c*kh*kw,
backward twice that (once when x needs no gradient). Rounds are interleaved (each variant once per
round, in a new order each round) and reported as medians, the fastest run beside them; ratios are
median time / F.conv2d's.
"""
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F

from exp import nb_06


def conv2d_unfold(x, w, b=None, stride=1, padding=0):
    "The plain im2col convolution: `F.unfold`, a batched matmul, autograd for the backward."
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)   # (n, c*kh*kw, oh*ow)
    out = w.view(o, -1) @ cols                                      # (n, o, oh*ow)
    if b is not None: out = out + b[:, None]
    oh, ow = (nb_06.conv_out_size(s, k, stride, padding) for s, k in ((h, kh), (wd, kw)))
    return out.view(n, o, oh, ow)


VARIANTS = {'F.conv2d': F.conv2d, 'unfold': conv2d_unfold, 'ours': nb_06.conv2d}
CLOCKS = {'wall': time.perf_counter, 'cpu': time.thread_time}


def lesson_shapes(bs, nfs=(1, 8, 16, 32, 64, 10), size=28):
    "(x shape, w shape) of each stride-2 3x3 convolution of the lesson's CNN."
    shapes = []
    for ni, nf in zip(nfs[:-1], nfs[1:]):
        shapes.append(((bs, ni, size, size), (nf, ni, 3, 3)))
        size = nb_06.conv_out_size(size, 3, 2, 1)
    return shapes


def flops(xs, ws, x_grad):
    "Matmul flops of one forward + backward."
    n, c, h, w = xs
    o, _, kh, kw = ws
    oh, ow = nb_06.conv_out_size(h, kh, 2, 1), nb_06.conv_out_size(w, kw, 2, 1)
    return 2 * n * oh * ow * o * c * kh * kw * (3 if x_grad else 2)


def measure(xs, ws, rounds, clock='wall', seed=0):
    "Median and min seconds of forward + backward per variant, once they agree with F.conv2d."
    torch.manual_seed(seed)
    x_grad = xs[1] > 1   # the first layer's input is the image: no gradient, as in training
    x = torch.randn(xs, requires_grad=x_grad)
    w = torch.randn(ws, requires_grad=True)
    b = torch.randn(ws[0], requires_grad=True)
    params = [t for t in (x, w, b) if t.requires_grad]
    g = torch.randn(F.conv2d(x, w, b, 2, 1).shape)
    def run(f):
        for t in params: t.grad = None
        f(x, w, b, 2, 1).backward(g)
    run(F.conv2d)
    ref = [t.grad.clone() for t in params]
    for k, f in VARIANTS.items():
        run(f)
        for t, r in zip(params, ref):
            err = ((t.grad - r).abs().max() / r.abs().max()).item()   # sums of ~1e5 products
            if err > 1e-4:
                raise RuntimeError(f"{k} disagrees with F.conv2d on {xs}: relative error {err:.1e}")
    times, order, now = {k: [] for k in VARIANTS}, list(VARIANTS), CLOCKS[clock]
    for _ in range(rounds):
        random.shuffle(order)
        for k in order:
            t0 = now()
            run(VARIANTS[k])
            times[k].append(now() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}, flops(xs, ws, x_grad)


def main(bs=256, rounds=31, threads=1, clock='wall', save=''):
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {list(CLOCKS)}, got {clock!r}")
    torch.set_num_threads(threads)
    random.seed(0)
    load_before = os.getloadavg()
    print(f"threads: {torch.get_num_threads()} | torch {torch.__version__} | forward + backward, "
          f"{rounds} interleaved rounds, {clock} clock, median (min) ms and GFLOP/s")
    print(f"{'x':<20}{'w':<16}" + ''.join(f"{k:>22}" for k in VARIANTS)
          + f"{'unfold/F':>10}{'ours/F':>8}")
    rows = []
    for xs, ws in lesson_shapes(bs):
        res, fl = measure(xs, ws, rounds, clock)
        cells = ''.join(f"{res[k][0] * 1e3:>8.2f} ({res[k][1] * 1e3:5.2f})"
                        f" {fl / res[k][0] / 1e9:5.1f}" for k in VARIANTS)
        r_unf, r_ours = (res[k][0] / res['F.conv2d'][0] for k in ('unfold', 'ours'))
        print(f"{str(xs):<20}{str(ws):<16}{cells}{r_unf:>9.2f}x{r_ours:>7.2f}x")
        rows.append({'x': xs, 'w': ws, 'gflop': fl / 1e9, 'ratio_unfold': r_unf,
                     'ratio_ours': r_ours,
                     **{k: {'median_s': m, 'min_s': mn} for k, (m, mn) in res.items()}})
    worst, worst_unf = (max(r[k] for r in rows) for k in ('ratio_ours', 'ratio_unfold'))
    print(f"\ntarget: ours within 3x of F.conv2d on every shape: worst {worst:.2f}x "
          f"({'met' if worst <= 3 else 'NOT met'}); plain unfold worst {worst_unf:.2f}x")
    load = [round(max(a, b), 1) for a, b in zip(load_before, os.getloadavg())]
    print(f"load average (1, 5, 15 min; the larger of before and after): {load} "
          f"on {os.cpu_count()} cores")
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        meta = {'clock': clock, 'threads': threads, 'bs': bs, 'rounds': rounds,
                'torch': torch.__version__, 'cores': os.cpu_count(),
                'cpu': platform.processor() or platform.machine(), 'load_average': load}
        Path(save).write_text(json.dumps({**meta, 'rows': rows}, indent=1), encoding='utf-8')


if __name__ == '__main__':
    fire.Fire(main)
