"""Samples per second for one epoch of a 784-50-10 MLP: our training loop against PyTorch's and bare ones.

    python bench/train.py                       # 50,000 synthetic rows, bs 64, one thread, 9 runs
    python bench/train.py --threads 2 --bs 128 --runs 11 --valid_rows 0
    python bench/train.py --clock cpu           # this process's CPU time: steadier on a busy machine

Each loop does the same work, one epoch: train on `rows` rows in batches of `bs` with SGD, then (as `fit`
does) measure loss and accuracy on `valid_rows` rows in batches of 2*bs. Samples/s counts training rows
per second of that epoch. The loops take turns (in a new random order each round), `runs` rounds after a
warm-up round; the table gives medians and their ratios, all measured in this one process:

- ours: `fit` with our `DataLoader`/`Sampler(shuffle=True)` and `Optimizer`, progress bar on (its console
  output is captured, so the terminal's drawing speed is not measured), then off, then also unshuffled;
- idiomatic PyTorch: `TensorDataset` + `torch.utils.data.DataLoader(shuffle=True)` + `optim.SGD`;
- PyTorch batched: the same, but the loader fetches a batch at a time, as ours does:
  `DataLoader(ds, sampler=BatchSampler(RandomSampler(ds), bs, drop_last=False), batch_size=None)`;
- bare loops: slicing `x[i:i+bs]` directly (no shuffling, no objects: the floor), and indexing a
  `randperm` (the same shuffling as ours, without our objects).

The progress bar of `fit` (a `ProgressTable`: a bar over the epochs with a results table, and a bar over
the batches redrawn at most twice a second, shown only while epochs last over a second) is measured by
`ours` (bar on) against `ours, progress=False`. The results are also written as JSON to `--out`.
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
import torch.utils.data as tud
from torch import nn, optim

from exp.nb_03 import DataLoader, Dataset, Optimizer, Sampler, accuracy, cross_entropy, fit


def get_model(n_in, nh, n_out):
    "The 784-nh-10 MLP of notebook 03."
    return nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, n_out))


def validate(model, loss_func, batches):
    "Loss and accuracy over `batches`, weighted by batch size, as `fit` computes them."
    model.eval()
    tot, acc, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in batches:
            out = model(xb)
            tot += loss_func(out, yb).item() * len(yb)
            acc += accuracy(out, yb).item() * len(yb)
            n += len(yb)
    return tot / max(n, 1), acc / max(n, 1)


def ours(model, loss_func, data, bs, lr, progress=True, shuffle=True):
    "`fit` for one epoch with our DataLoader, Sampler and Optimizer."
    x, y, xv, yv = data
    tds, vds = Dataset(x, y), Dataset(xv, yv)
    train_dl = DataLoader(tds, Sampler(tds, bs, shuffle=shuffle))
    valid_dl = DataLoader(vds, Sampler(vds, 2 * bs)) if len(xv) else None
    fit(1, model, loss_func, Optimizer(model.parameters(), lr), train_dl, valid_dl, progress=progress)


def idiomatic(model, loss_func, data, bs, lr, batched=False):
    "The usual PyTorch loop: TensorDataset, torch's DataLoader (shuffled; `batched`: a batch per fetch), SGD."
    x, y, xv, yv = data
    tds = tud.TensorDataset(x, y)
    vds = tud.TensorDataset(xv, yv)
    if batched:   # the samplers yield lists of indices; batch_size=None: one `ds[list]` per batch
        sampler = tud.BatchSampler(tud.RandomSampler(tds), bs, drop_last=False)
        train_dl = tud.DataLoader(tds, sampler=sampler, batch_size=None)
        valid_sampler = tud.BatchSampler(tud.SequentialSampler(vds), 2 * bs, drop_last=False)
        valid_dl = tud.DataLoader(vds, sampler=valid_sampler, batch_size=None)
    else:
        train_dl = tud.DataLoader(tds, batch_size=bs, shuffle=True)
        valid_dl = tud.DataLoader(vds, batch_size=2 * bs)
    opt = optim.SGD(model.parameters(), lr=lr)
    model.train()
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    if len(xv): validate(model, loss_func, valid_dl)


def bare(model, loss_func, data, bs, lr, shuffle=False):
    "No objects: slice the tensors (or index a randperm), update the parameters in place."
    x, y, xv, yv = data
    params = list(model.parameters())
    idxs = torch.randperm(len(x)) if shuffle else None
    model.train()
    for i in range(0, len(x), bs):
        if shuffle: xb, yb = x.index_select(0, idxs[i:i + bs]), y.index_select(0, idxs[i:i + bs])
        else: xb, yb = x[i:i + bs], y[i:i + bs]
        loss = loss_func(model(xb), yb)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(p.grad, alpha=lr)
                p.grad = None
    if len(xv): validate(model, loss_func, ((xv[i:i + 2 * bs], yv[i:i + 2 * bs]) for i in range(0, len(xv), 2 * bs)))


OURS, OURS_UNSHUFFLED = 'ours: fit + DataLoader/Sampler/Optimizer', 'ours, progress=False, shuffle=False'
IDIOMATIC = 'idiomatic: TensorDataset + DataLoader + SGD'
TORCH_BATCHED = 'torch batched: BatchSampler, batch_size=None'
BARE, BARE_SHUFFLED = 'bare loop slicing tensors', 'bare loop indexing a randperm'
LOOPS = {OURS: ours,
         'ours, progress=False': lambda *a: ours(*a, progress=False),
         OURS_UNSHUFFLED: lambda *a: ours(*a, progress=False, shuffle=False),
         IDIOMATIC: idiomatic,
         TORCH_BATCHED: lambda *a: idiomatic(*a, batched=True),
         BARE: bare,
         BARE_SHUFFLED: lambda *a: bare(*a, shuffle=True)}


def main(rows=50_000, valid_rows=10_000, bs=64, nh=50, lr=0.1, runs=9, threads=1, loss='torch', clock='wall',
         out='bench/results/train.json'):
    "Print the median samples/s of one epoch for each loop, and their ratios, measured side by side."
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    loss_func = {'torch': F.cross_entropy, 'ours': cross_entropy}[loss]
    timer = {'wall': time.perf_counter, 'cpu': time.process_time}[clock]
    print(f"threads: {torch.get_num_threads()} | torch {torch.__version__} | 784-{nh}-10, bs {bs}, lr {lr}, "
          f"loss {loss} | {rows:,} training rows (+{valid_rows:,} validation) | {runs} runs after a warm-up | {clock} clock")
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(rows, 784, generator=g), torch.randint(0, 10, (rows,), generator=g),
            torch.randn(valid_rows, 784, generator=g), torch.randint(0, 10, (valid_rows,), generator=g))
    times, order = {k: [] for k in LOOPS}, list(LOOPS)
    for r in range(runs + 1):   # round 0 warms up; the loops take turns, in a new order each round, so noise hits them alike
        random.Random(r).shuffle(order)
        for name in order:
            loop = LOOPS[name]
            torch.manual_seed(r)
            model = get_model(784, nh, 10)
            with contextlib.redirect_stdout(io.StringIO()):
                t0 = timer()
                loop(model, loss_func, data, bs, lr)
                t = timer() - t0
            if r: times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'loop':<46}{'median s':>9}{'samples/s':>11}{'vs idiomatic':>14}{'vs bare':>9}")
    for k, t in med.items():
        print(f"{k:<46}{t:>9.3f}{rows / t:>11,.0f}{med[IDIOMATIC] / t:>13.2f}x{med[BARE] / t:>8.2f}x")
    print(f"\ntargets: ours >= 1.5x idiomatic: {med[IDIOMATIC] / med[OURS]:.2f}x; within 10% of the bare loop: "
          f"{med[BARE] / med[OURS]:.2f}x shuffled (the bare loop shuffling alike: {med[BARE] / med[BARE_SHUFFLED]:.2f}x), "
          f"{med[BARE] / med[OURS_UNSHUFFLED]:.2f}x unshuffled")
    print(f"ours against torch's batched loader: {med[TORCH_BATCHED] / med[OURS]:.2f}x; the progress bar "
          f"costs {1000 * (med[OURS] - med['ours, progress=False']):+.1f} ms per epoch "
          f"({med[OURS] / med['ours, progress=False'] - 1:+.1%})")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        res = {'threads': threads, 'rows': rows, 'valid_rows': valid_rows, 'bs': bs, 'runs': runs, 'clock': clock,
               'torch': torch.__version__, 'median_s': med, 'samples_per_s': {k: rows / t for k, t in med.items()},
               'load_before': load_before, 'load_after': os.getloadavg()}
        Path(out).write_text(json.dumps(res, indent=1) + '\n', encoding='utf-8')
        print(f"written to {out}")
    return None


if __name__ == '__main__':
    fire.Fire(main)
