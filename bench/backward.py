"""Forward + backward of a 784 -> nh -> 1 MSE net: the hand-written backward of `exp.nb_02` against torch.

    python bench/backward.py                  # n=50,000 rows, nh=50, float32, 1 thread
    python bench/backward.py --threads 2 --reps 21
    python bench/backward.py --memory False   # timings only

Variants, each computing the loss and the gradients of x, w1, b1, w2, b2 (x too: autograd's x requires grad):
  functional     `lin`, `relu`, `mse` then `mse_grad`, `lin_grad`, `relu_grad`, `lin_grad` (w.g = inp.t() @ out.g)
  Model          the exported `Model(w1, b1, w2, b2)`: `loss = model(x, y); model.backward()`
  autograd       the same `lin`, `relu`, `mse` on tensors that require grad, then `loss.backward()`
  autograd+torch.relu   the same with `torch.relu` instead of our `relu` (`clamp_min`): torch's relu has a
                 faster backward kernel (`threshold_backward`) than clamp_min's (a `where`)
  nn.Sequential  `nn.Linear(784, nh), nn.ReLU(), nn.Linear(nh, 1)` and `F.mse_loss`, then `loss.backward()`
Gradients are released before every run (`.g = None`, `.grad = None`), so no run pays for the previous one.
Timings are interleaved (one run of each variant per round, the order rotating) and reported as medians,
with the fastest run beside them (on a busy machine the minimum is the steadier estimate of the cost);
ratios are to autograd.

Peak memory: each variant runs once in a fresh subprocess, which resets its peak resident set to the current
one just before the forward pass (`/proc/self/clear_refs`) and reads the peak (`VmHWM`) after the backward:
the growth is what the pass needed on top of its inputs. tracemalloc would not see torch's allocations; large
tensors are mmapped and returned to the OS when freed, so the resident-set peak is a faithful measure. Not
`ru_maxrss`: Linux carries it over from the parent through fork and exec. (Without /proc, e.g. on macOS,
we fall back to `ru_maxrss` deltas, which include the set-up's peak.)

Two small side tables: the ways to write `relu_grad` on an (n, nh) tensor, and the course's outer-product
`w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)` on `outer_rows` rows (it needs n*784*nh floats:
7.8 GB at n=50,000), against autograd on the same rows. Synthetic random data: speed does not depend on it.
"""
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F
from torch import nn

from exp import nb_02

VARIANTS = ['functional', 'Model', 'autograd', 'autograd+torch.relu', 'nn.Sequential']


def make_data(n, nh, seed=0):
    "Random float32 x (n, 784), float targets (n,), and Kaiming-initialised w1, b1, w2, b2."
    torch.manual_seed(seed)
    x = torch.randn(n, 784)
    y = torch.randint(0, 10, (n,)).float()
    return x, y, [torch.randn(784, nh) * math.sqrt(2 / 784), torch.zeros(nh), torch.randn(nh, 1) / math.sqrt(nh), torch.zeros(1)]


def make_step(variant, x, y, params, lin_grad=nb_02.lin_grad):
    "A zero-argument function doing one forward + backward of `variant`, gradients released first."
    w1, b1, w2, b2 = params
    if variant == 'functional':
        def step():
            for t in (x, w1, b1, w2, b2): t.g = None
            l1 = nb_02.lin(x, w1, b1)      # (n, nh)
            l2 = nb_02.relu(l1)            # (n, nh)
            out = nb_02.lin(l2, w2, b2)    # (n, 1)
            loss = nb_02.mse(out, y)
            nb_02.mse_grad(out, y)
            lin_grad(l2, out, w2, b2)
            nb_02.relu_grad(l1, l2)
            lin_grad(x, l1, w1, b1)
            return loss
        return step
    if variant == 'Model':
        model = nb_02.Model(w1, b1, w2, b2)
        def step():
            for t in (x, w1, b1, w2, b2): t.g = None
            loss = model(x, y)
            model.backward()
            return loss
        return step
    if variant in ('autograd', 'autograd+torch.relu'):
        xr = x.detach().requires_grad_()
        pr = [p.detach().clone().requires_grad_() for p in params]
        act = nb_02.relu if variant == 'autograd' else torch.relu
        def step():
            for t in [xr] + pr: t.grad = None
            loss = nb_02.mse(nb_02.lin(act(nb_02.lin(xr, pr[0], pr[1])), pr[2], pr[3]), y)
            loss.backward()
            return loss
        return step
    if variant == 'nn.Sequential':
        xr = x.detach().requires_grad_()
        seq = nn.Sequential(nn.Linear(784, w1.shape[1]), nn.ReLU(), nn.Linear(w1.shape[1], 1))
        with torch.no_grad():
            for layer, w, b in ((seq[0], w1, b1), (seq[2], w2, b2)): layer.weight.copy_(w.t()); layer.bias.copy_(b)
        def step():
            seq.zero_grad(set_to_none=True); xr.grad = None
            loss = F.mse_loss(seq(xr).squeeze(-1), y)
            loss.backward()
            return loss
        return step
    raise ValueError(f"unknown variant {variant!r}: choose from {VARIANTS}")


def outer_lin_grad(inp, out, w, b):
    "The course's first `lin_grad`: `w.g` as a sum of per-row outer products, an (n, n_in, n_out) tensor."
    inp.g = out.g @ w.t()
    w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)
    b.g = out.g.sum(0)


def timings(fns, reps):
    "Seconds of each run of each function in `fns` (a dict), timed in interleaved rounds after one warm-up each."
    for f in fns.values(): f()
    ts, names = {k: [] for k in fns}, list(fns)
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:   # rotate the order: no variant always goes first
            t0 = time.perf_counter(); fns[k](); ts[k].append(time.perf_counter() - t0)
    return ts


def medians(fns, reps):
    "Median seconds of each function in `fns` over `reps` interleaved rounds."
    return {k: statistics.median(v) for k, v in timings(fns, reps).items()}


def peak_mb(variant, n, nh, threads):
    "Growth of the peak RSS (MB) for one forward + backward of `variant`, measured in a fresh subprocess."
    cmd = [sys.executable, str(Path(__file__).resolve()), '--mem_of', variant, '--n', str(n), '--nh', str(nh),
           '--threads', str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, encoding='utf-8', timeout=600)
    if res.returncode != 0: raise RuntimeError(f"memory run of {variant} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])['peak_mb']


def peak_rss_kb(reset=False):
    "Peak resident set of this process in KB; `reset=True` first resets the peak to the current RSS (Linux)."
    status = Path('/proc/self/status')
    if not status.exists(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KB on Linux, bytes on macOS
    if reset: Path('/proc/self/clear_refs').write_text('5')   # "5": reset the peak RSS to the current RSS
    return next(int(l.split()[1]) for l in status.read_text().splitlines() if l.startswith('VmHWM'))


def relu_grad_variants(inp, g):
    "Ways to write the ReLU backward, as zero-argument functions (each returns a new tensor)."
    return {'(inp > 0).float() * out.g   (course)': lambda: (inp > 0).float() * g,
            'out.g * (inp > 0)': lambda: g * (inp > 0),
            'torch.where(inp > 0, out.g, 0.)': lambda: torch.where(inp > 0, g, 0.),
            'out.g.masked_fill(inp <= 0, 0.)': lambda: g.masked_fill(inp <= 0, 0.),
            '(inp > 0).to(dtype).mul_(out.g) (ours)': lambda: (inp > 0).to(g.dtype).mul_(g),
            'threshold_backward (torch.relu backward)': lambda: torch.ops.aten.threshold_backward(g, inp, 0.)}


def main(n=50_000, nh=50, reps=11, threads=1, memory=True, outer_rows=2_000, mem_of=None):
    "Time (and measure the memory of) forward + backward for each variant; print medians and ratios."
    torch.set_num_threads(threads)
    if mem_of is not None:   # internal: one variant, in a subprocess started by `peak_mb`
        x, y, params = make_data(n, nh)
        step = make_step(mem_of, x, y, params)
        before = peak_rss_kb(reset=True)
        step()
        after = peak_rss_kb()
        print(json.dumps({'variant': mem_of, 'peak_mb': (after - before) / 1024}))
        return
    print(f"torch {torch.__version__} | threads: {torch.get_num_threads()} | x ({n}, 784) float32, nh={nh}, "
          f"{reps} interleaved rounds")
    x, y, params = make_data(n, nh)
    steps = {v: make_step(v, x, y, params) for v in VARIANTS}
    losses = {v: f().item() for v, f in steps.items()}
    assert all(math.isclose(l, losses['autograd'], rel_tol=1e-4) for l in losses.values()), losses
    runs = timings(steps, reps)
    t, fastest = {k: statistics.median(v) for k, v in runs.items()}, {k: min(v) for k, v in runs.items()}
    mem = {v: peak_mb(v, n, nh, threads) for v in VARIANTS} if memory else {}
    ref = t['autograd']
    print(f"\n{'variant':20s} {'median ms':>10s} {'vs autograd':>12s} {'min ms':>8s} {'vs autograd':>12s}"
          + (f" {'peak MB':>9s}" if memory else ''))
    for v in VARIANTS:
        print(f"{v:20s} {1000 * t[v]:10.1f} {t[v] / ref:11.2f}x {1000 * fastest[v]:8.1f} "
              f"{fastest[v] / fastest['autograd']:11.2f}x" + (f" {mem[v]:9.0f}" if memory else ''))
    if memory: print(f"(x itself is {x.numel() * 4 / 2**20:.0f} MB and is not counted: peak MB is the growth during the pass)")

    inp, g = torch.randn(n, nh), torch.randn(n, nh)
    r = medians(relu_grad_variants(inp, g), 3 * reps)
    base = r['(inp > 0).float() * out.g   (course)']
    print(f"\nrelu_grad on ({n}, {nh}) float32\n{'version':42s} {'median ms':>10s} {'vs course':>10s}")
    for k, v in r.items(): print(f"{k:42s} {1000 * v:10.2f} {v / base:9.2f}x")

    if outer_rows:
        rows = min(outer_rows, n)
        xs, ys = x[:rows], y[:rows]
        small = {'functional, outer-product lin_grad': make_step('functional', xs, ys, params, lin_grad=outer_lin_grad),
                 'functional, inp.t() @ out.g': make_step('functional', xs, ys, params),
                 'autograd': make_step('autograd', xs, ys, params)}
        o = medians(small, max(3, reps // 2))
        print(f"\non the first {rows} rows (the outer products are a ({rows}, 784, {nh}) tensor, "
              f"{rows * 784 * nh * 4 / 2**20:.0f} MB)\n{'variant':36s} {'median ms':>10s} {'vs autograd':>12s}")
        for k, v in o.items(): print(f"{k:36s} {1000 * v:10.1f} {v / o['autograd']:11.2f}x")


if __name__ == '__main__':
    fire.Fire(main)
