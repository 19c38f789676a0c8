"""Images per second of data-parallel training on Fashion-MNIST at one global batch size (nb_09).

    python bench/distributed.py                 # CNN, global batch 1024, 20 timed steps per loop
    python bench/distributed.py --model mlp --bs 512 --steps 30
    python bench/distributed.py --json bench/results/distributed.json
    torchrun --standalone --nproc_per_node=2 bench/distributed.py    # torchrun's group (GPUs too)

Every setting trains the same model from the same weights on the same global batches of the 60,000
training images, `warmup` steps then `steps` timed steps, and reports the median step as images/s:

- 1 process x 1 thread and 1 process x 2 threads: a bare loop (index, forward, backward, SGD step);
- 2 processes x 1 thread (each takes global/2 rows of every batch), three loops:
  * bare DDP: `DistributedDataParallel` (bucketed all-reduce, overlapped with backward);
  * by hand: `average_gradients` after backward (one all-reduce per tensor, nothing overlapped); its
    all-reduce is timed on its own, giving the share of a step spent communicating;
  * Learner + DistributedCB (+ MetricsCB): the lesson's loop, to compare with the bare DDP loop.

Results: the scaling ratio (2 processes, bare DDP) / (1 process x 1 thread), and Learner / bare DDP.
Targets: >= 1.4x, and the Learner within 10% of the bare DDP loop. A busy machine depresses the
scaling (two processes need two idle cores): the load average (`uptime`) is printed and saved.
Under `torchrun` the script times the three loops on the group it is given (rank 0 prints); on GPUs
each rank uses the GPU `LOCAL_RANK` names, and steps are timed after `torch.cuda.synchronize()`.
"""
import contextlib
import io
import json as jsonlib
import os
import statistics
import sys
import time
from pathlib import Path

import fire
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exp import nb_09  # noqa: E402
from exp.nb_09 import DDP, average_gradients, dist, get_rank, get_world_size  # noqa: E402


def get_model(name):
    "The lesson's MLP (784-128-10) or a small batch-norm CNN (4 stride-2 convs, 8-64 channels)."
    if name == 'mlp': return nb_09.get_mlp(128)
    def conv(ni, nf):
        return [nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf),
                nn.ReLU()]
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), *conv(1, 8), *conv(8, 16), *conv(16, 32),
                         *conv(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def get_data():
    "The 60,000 Fashion-MNIST training images, normalised, (n, 784), and their labels."
    with contextlib.redirect_stdout(io.StringIO()): x, y, _, _ = nb_09.get_fashion_mnist()
    return (x - x.mean()) / x.std(), y


def batches(n, bs, n_batches, seed=0):
    "This rank's indices for the first `n_batches` global batches of `bs` (a shared permutation)."
    world_size, rank = get_world_size(), get_rank()
    idxs = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [idxs[i * bs + rank:(i + 1) * bs:world_size] for i in range(n_batches)]


def now(device):
    "The time, once the GPU (if any) has finished what it was given."
    if device.type == 'cuda': torch.cuda.synchronize(device)
    return time.perf_counter()


def bare_loop(model_name, bs, warmup, steps, lr=0.1, ddp=False, by_hand=False):
    "Worker: median seconds of a step (and of its all-reduce, by hand): bare, DDP or by-hand loop."
    device = nb_09.rank_device()
    if device.type == 'cuda': torch.cuda.set_device(device)
    x, y = (t.to(device) for t in get_data())
    torch.manual_seed(0)
    model = get_model(model_name).to(device)
    net = (DDP(model, device_ids=[device] if device.type == 'cuda' else None)) if ddp else model
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    times, comm = [], []
    for i, idx in enumerate(batches(len(x), bs, warmup + steps)):
        t0 = now(device)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        if by_hand:
            t1 = now(device)
            average_gradients(model)
            comm.append(now(device) - t1)
        opt.step(); opt.zero_grad()
        times.append(now(device) - t0)
    return statistics.median(times[warmup:]), statistics.median(comm[warmup:]) if comm else None


class StepTimer(nb_09.Callback):
    "Times each training batch (one `before_batch` to the next); stops the fit after `n` batches."
    order = 100
    def __init__(self, n): self.n, self.times, self.t0 = n, [], None
    def before_batch(self, learn):
        t = now(nb_09.rank_device())
        if self.t0 is not None: self.times.append(t - self.t0)
        self.t0 = t
        if len(self.times) >= self.n: raise nb_09.CancelFitException()


def learner_loop(model_name, bs, warmup, steps, lr=0.1):
    "Worker: median seconds of a step of the Learner with DistributedCB and MetricsCB."
    x, y = get_data()
    torch.manual_seed(0)
    timer = StepTimer(warmup + steps)
    dls = nb_09.get_dls(x, y, x[:bs], y[:bs], bs)
    learn = nb_09.Learner(get_model(model_name), dls, F.cross_entropy, lr=lr,
                          cbs=[nb_09.DistributedCB(seed=0), nb_09.DeviceCB(),
                               nb_09.MetricsCB(show=False), timer])
    learn.fit(1, valid=False)
    return statistics.median(timer.times[warmup:]), None


def in_group(model_name, bs, warmup, steps):
    "Worker: the three 2-process loops, one after the other, in the current process group."
    return {'bare DDP': bare_loop(model_name, bs, warmup, steps, ddp=True),
            'by hand': bare_loop(model_name, bs, warmup, steps, by_hand=True),
            'Learner + DistributedCB': learner_loop(model_name, bs, warmup, steps)}


def load():
    "The 1-minute load average."
    return os.getloadavg()[0]


def report(rows, bs, base, loads, world_size):
    "Print the table and the ratios; return them as a dict."
    print(f"\n{'setting':46} {'images/s':>10} {'vs 1x1':>7} {'all-reduce':>11}")
    out = {}
    for name, (secs, comm) in rows.items():
        ips = bs / secs
        share = f"{comm / secs:.0%}" if comm else ''
        print(f"{name:46} {ips:10,.0f} {base / secs if base else float('nan'):6.2f}x {share:>11}")
        out[name] = {'step_s': secs, 'images_per_s': ips, 'allreduce_s': comm,
                     'allreduce_share': comm / secs if comm else None}
    ddp = next(k for k in rows if 'bare DDP' in k)
    lrn = next(k for k in rows if 'Learner' in k)
    ratios = {'learner_vs_bare_ddp': rows[lrn][0] / rows[ddp][0]}
    if base: ratios['scaling_2procs_vs_1x1'] = base / rows[ddp][0]
    print()
    if base: print(f"scaling, {world_size} processes (bare DDP) / 1 process x 1 thread: "
                   f"{ratios['scaling_2procs_vs_1x1']:.2f}x (target >= 1.4x)")
    print(f"Learner + DistributedCB step / bare DDP step: {ratios['learner_vs_bare_ddp']:.2f} "
          f"(target <= 1.10)")
    print(f"load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f} "
          f"on {os.cpu_count()} cores")
    return {'results': out, 'ratios': ratios}


def main(model='cnn', bs=1024, warmup=3, steps=20, json=None):
    "Time every setting; print the table; write `json` if given."
    loads = [load()]
    if 'RANK' in os.environ:                              # under torchrun: time the group we are in
        nb_09.init_distributed()
        torch.set_num_threads(1)
        res = in_group(model, bs, warmup, steps)
        if get_rank() == 0:
            rows = {f'{get_world_size()} procs, {k}': v for k, v in res.items()}
            report(rows, bs, None, loads + [load()], get_world_size())
        dist.destroy_process_group()
        return
    rows = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        name = f'1 proc x {threads} thread{"s" * (threads > 1)}, bare loop'
        rows[name] = bare_loop(model, bs, warmup, steps)
        print(f"1 process x {threads} threads done", flush=True)
    torch.set_num_threads(1)
    res = nb_09.launch(in_group, model, bs, warmup, steps, world_size=2, timeout=1200)[0]
    rows.update({f'2 procs x 1 thread, {k}': v for k, v in res.items()})
    loads.append(load())
    summary = report(rows, bs, rows['1 proc x 1 thread, bare loop'][0], loads, 2)
    if json:
        summary.update(model=model, global_bs=bs, warmup=warmup, steps=steps,
                       torch=torch.__version__,
                       cpus=os.cpu_count(), load_before=loads[0], load_after=loads[1],
                       when=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
        Path(json).parent.mkdir(parents=True, exist_ok=True)
        Path(json).write_text(jsonlib.dumps(summary, indent=1) + '\n', encoding='utf-8')
        print('wrote', json)


if __name__ == '__main__':
    fire.Fire(main)
