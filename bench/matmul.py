#!/usr/bin/env python
"""The matmul ladder of nbs/01_matmul.ipynb, measured side by side in one process.

    python bench/matmul.py                      # one thread, the lesson shape and squares 64..512
    python bench/matmul.py --threads=2 --sizes=64,128 --budget=1

For each shape: the median time of each variant, its speedup over the three loops, how many times slower
than `@` it is, and GFLOP/s (2mnp flops). A pure-Python variant is only run where it should finish within
`--budget` seconds; beyond that its time is estimated from its n^3 growth and marked `~` (an estimate).
Saves a log-log plot of time against size to `--out` (bench/out/ is not committed).
"""
import statistics
import timeit
from pathlib import Path

import fire
import torch

from exp.nb_01 import matmul_broadcast, matmul_einsum, matmul_elementwise, matmul_loops

LADDER = {'loops': matmul_loops, 'elementwise': matmul_elementwise, 'broadcast': matmul_broadcast,
          'einsum': matmul_einsum, '@': torch.matmul}


def median_time(f, repeat=5, min_time=0.2):
    "Median seconds per call of `f()` over `repeat` measurements, each calling it often enough to last `min_time`."
    timer = timeit.Timer(f)
    t1 = timer.timeit(1)  # also a warm-up
    if t1 >= min_time: return statistics.median([t1] + [timer.timeit(1) for _ in range(repeat - 1)])
    number = max(1, int(min_time / max(t1, 1e-7)))
    return statistics.median(timer.repeat(repeat, number)) / number


def fmt_ratio(r):
    "A ratio like `1,234x` or `2.5x`."
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x"


def fmt_time(s):
    "Seconds as a short human string."
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.2f} us"


def measure(shape, budget, last, seed=0):
    "Time every variant on `shape` = (m, n, p); `last` holds each variant's last measured (flops, seconds)."
    m, n, p = shape
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(m, n, generator=g), torch.randn(n, p, generator=g)
    flops, out = 2 * m * n * p, {}
    for name, f in LADDER.items():
        if name in last:
            predicted = last[name][1] * flops / last[name][0]  # the Python variants grow like m*n*p or faster
            if predicted > budget:
                out[name] = (predicted, True)
                continue
        secs = median_time(lambda: f(a, b), repeat=3 if name in ('loops', 'elementwise') else 7)
        last[name] = (flops, secs)
        out[name] = (secs, False)
    return out


def print_table(title, res, flops):
    "One table: time, speedup over the loops, times slower than `@`, GFLOP/s."
    print(f"\n{title}")
    print(f"  {'variant':<12}{'time':>12}{'speedup':>13}{'slower than @':>16}{'GFLOP/s':>10}")
    (loops, loops_est), at = res['loops'], res['@'][0]
    for name, (secs, est) in res.items():
        mark, mark_sp = '~' if est else '', '~' if est or loops_est else ''
        print(f"  {name:<12}{mark + fmt_time(secs):>12}{mark_sp + fmt_ratio(loops / secs):>13}"
              f"{mark + fmt_ratio(secs / at):>16}{flops / secs / 1e9:>10.3g}")


def plot(results, out):
    "Log-log plot of time against size per variant (hollow markers: estimates); saved to `out`."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted(results)
    for name in LADDER:
        xs, ys = sizes, [results[s][name][0] for s in sizes]
        line, = ax.plot(xs, ys, '-', label=name)
        for x, s in zip(xs, sizes):
            ax.plot(x, results[s][name][0], 'o', color=line.get_color(),
                    mfc='none' if results[s][name][1] else line.get_color())
    ax.set(xscale='log', yscale='log', xlabel='n (n x n) @ (n x n)', ylabel='seconds per call',
           title='matmul ladder (hollow: estimated from n^3)')
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches='tight')
    return out


def main(threads=1, sizes=(64, 128, 256, 512), budget=10.0, out='bench/out/matmul.png'):
    "Measure the ladder on the lesson shape (5,784)@(784,10) and on square sizes; print tables, save a plot."
    torch.set_num_threads(threads)
    sizes = [int(s) for s in (sizes.split(',') if isinstance(sizes, str) else sizes if isinstance(sizes, (list, tuple)) else [sizes])]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians; "
          f"'~' = estimated from n^3 growth (would take more than {budget} s)")
    last, results = {}, {}  # the lesson shape's times predict the first square size's
    print_table('lesson shape (5, 784) @ (784, 10)', measure((5, 784, 10), budget, last), 2 * 5 * 784 * 10)
    for n in sizes:
        results[n] = measure((n, n, n), budget, last)
        print_table(f'({n}, {n}) @ ({n}, {n})', results[n], 2 * n ** 3)
    if out: print(f"\nplot saved to {plot(results, out)}")


if __name__ == '__main__':
    fire.Fire(main)
