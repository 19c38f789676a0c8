"""Images per second of data-parallel training on Fashion-MNIST at one global batch size (nb_09).

    python bench/distributed.py                 # CNN, global batch 1024, 7 rounds of 5 timed steps
    python bench/distributed.py --model mlp --rounds 9 --steps 10
    python bench/distributed.py --json bench/results/distributed.json
    torchrun --standalone --nproc_per_node=2 bench/distributed.py    # torchrun's group (GPUs too)

Every setting trains the same model from the same weights on global batches of `bs` of the 60,000
training images, and reports its median step as images/s:

- 1 process x 1 thread and 1 process x 2 threads: a bare loop (index, forward, backward, SGD step),
  run by rank 0 alone while rank 1 waits in a barrier (so the two cores are the 1-process run's);
- 2 processes x 1 thread (each takes bs/2 rows of every global batch), three loops:
  * bare DDP: `DistributedDataParallel` (bucketed all-reduce, overlapped with backward);
  * by hand: `average_gradients` after backward (one all-reduce per tensor, nothing overlapped); its
    all-reduce is timed on its own, giving the share of a step spent communicating;
  * Learner + DistributedCB (+ DeviceCB, MetricsCB): the lesson's loop, against the bare DDP loop.

All five run in one process group, taking turns: `rounds` rounds (in a rotating order), each one
untimed step then `steps` timed steps per setting, so that a change in the machine's load hits every
setting alike. Beside each median step: its share in the all-reduce (by hand), and CPU/wall, the
process's CPU seconds per second of step (about 1 per thread on idle cores; lower when it waits for
a core, or for the other rank). Results: the scaling ratio (2 processes, bare DDP) / (1 process x 1
thread), and Learner / bare DDP. Targets: >= 1.4x, and the Learner within 10% of the bare DDP loop.
Two processes need two idle cores: the load average (`uptime`) is printed and saved beside them.
Under `torchrun` the script uses the group it is given (rank 0 prints); on GPUs each rank uses the
GPU named by `LOCAL_RANK`, steps are timed after `torch.cuda.synchronize()`, "threads" mean little.
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


def now(device):
    "The time, once the GPU (if any) has finished what it was given."
    if device.type == 'cuda': torch.cuda.synchronize(device)
    return time.perf_counter()


class BareLoop():
    "A plain SGD loop on global batches of `bs`: alone (`local`), with DDP, or averaging by hand."
    def __init__(self, model_name, x, y, bs, device, lr=0.1, ddp=False, by_hand=False, local=False):
        torch.manual_seed(0)
        self.model = get_model(model_name).to(device)
        ids = [device] if device.type == 'cuda' else None
        self.net = DDP(self.model, device_ids=ids) if ddp else self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.x, self.y, self.device, self.by_hand, self.i = x, y, device, by_hand, 0
        world_size, rank = (1, 0) if local else (get_world_size(), get_rank())
        idxs = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        self.batches = [idxs[i * bs + rank:(i + 1) * bs:world_size] for i in range(len(x) // bs)]

    def run(self, steps):
        "One untimed step, then `steps` timed ones: their seconds, CPU seconds, all-reduce seconds."
        times, cpu, comm = [], [], []
        for _ in range(steps + 1):
            idx = self.batches[self.i % len(self.batches)].to(self.device)
            self.i += 1
            t0, c0 = now(self.device), time.process_time()
            F.cross_entropy(self.net(self.x[idx]), self.y[idx]).backward()
            if self.by_hand:
                t1 = now(self.device)
                average_gradients(self.model)
                comm.append(now(self.device) - t1)
            self.opt.step(); self.opt.zero_grad()
            times.append(now(self.device) - t0); cpu.append(time.process_time() - c0)
        return times[1:], cpu[1:], comm[1:]


class StepTimer(nb_09.Callback):
    "Times each training batch (one `before_batch` to the next); stops the fit after `n` of them."
    order = 100
    def __init__(self, n, device):
        self.n, self.device, self.times, self.cpu, self.t0 = n, device, [], [], None
    def before_batch(self, learn):
        t, c = now(self.device), time.process_time()
        if self.t0 is not None: self.times.append(t - self.t0); self.cpu.append(c - self.c0)
        self.t0, self.c0 = t, c
        if len(self.times) >= self.n: raise nb_09.CancelFitException()


class LearnerLoop():
    "The Learner with DistributedCB, DeviceCB and MetricsCB; each `run` is a short fit."
    def __init__(self, model_name, x, y, bs, device, lr=0.1):
        torch.manual_seed(0)
        dls = nb_09.get_dls(x, y, x[:bs], y[:bs], bs)
        self.device = device
        self.learn = nb_09.Learner(get_model(model_name), dls, F.cross_entropy, lr=lr,
                                   cbs=[nb_09.DistributedCB(seed=0), nb_09.DeviceCB(),
                                        nb_09.MetricsCB(show=False)])

    def run(self, steps):
        "A fit stopped after `steps` + 1 batches; the first (DDP's first step) is not counted."
        timer = StepTimer(steps + 1, self.device)
        self.learn.fit(1, valid=False, cbs=[timer])
        return timer.times[1:], timer.cpu[1:], []


def bench_worker(model_name, bs, rounds, steps):
    "Worker: every setting in turn, `rounds` times; rank 0's step times and all-reduce times."
    rank, device = get_rank(), nb_09.rank_device()
    if device.type == 'cuda': torch.cuda.set_device(device)
    x, y = get_data()
    xd, yd = x.to(device), y.to(device)
    def alone(): return BareLoop(model_name, xd, yd, bs, device, local=True)
    loops = {'1 proc x 1 thread, bare loop': (alone(), 1),
             '1 proc x 2 threads, bare loop': (alone(), 2),
             'bare DDP': (BareLoop(model_name, xd, yd, bs, device, ddp=True), None),
             'by hand': (BareLoop(model_name, xd, yd, bs, device, by_hand=True), None),
             'Learner + DistributedCB': (LearnerLoop(model_name, x, y, bs, device), None)}
    names = list(loops)
    times, cpu, comm = ({k: [] for k in names} for _ in range(3))
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:   # a rotating order
            loop, threads = loops[name]
            if threads is None: t, u, c = loop.run(steps)
            else:                                  # rank 0 alone; the others wait, idle
                dist.barrier()
                t, u, c = [], [], []
                if rank == 0:
                    torch.set_num_threads(threads)
                    t, u, c = loop.run(steps)
                    torch.set_num_threads(1)
                dist.barrier()
            times[name] += t; cpu[name] += u; comm[name] += c
    def med(xs): return statistics.median(xs) if xs else None
    return {k: (med(times[k]), med(cpu[k]), med(comm[k])) for k in names}


def report(rows, bs, world_size, loads):
    "Print the table and the ratios; return them as a dict."
    base = rows['1 proc x 1 thread, bare loop'][0]
    print(f"\n{'setting':46} {'images/s':>10} {'vs 1x1':>7} {'all-reduce':>11} {'CPU/wall':>9}")
    out = {}
    for name, (secs, cpu, comm) in rows.items():
        share = f"{comm / secs:.0%}" if comm else ''
        print(f"{name:46} {bs / secs:10,.0f} {base / secs:6.2f}x {share:>11} {cpu / secs:9.2f}")
        out[name] = {'step_s': secs, 'images_per_s': bs / secs, 'allreduce_s': comm,
                     'allreduce_share': comm / secs if comm else None, 'cpu_s': cpu}
    ddp, lrn = rows[f'{world_size} procs x 1 thread, bare DDP'][0], rows[
        f'{world_size} procs x 1 thread, Learner + DistributedCB'][0]
    ratios = {'scaling_2procs_vs_1x1': base / ddp, 'learner_vs_bare_ddp': lrn / ddp}
    print(f"\nscaling, {world_size} processes (bare DDP) / 1 process x 1 thread: "
          f"{ratios['scaling_2procs_vs_1x1']:.2f}x (target >= 1.4x)")
    print(f"Learner + DistributedCB step / bare DDP step: {ratios['learner_vs_bare_ddp']:.2f} "
          f"(target <= 1.10)")
    print(f"load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f} "
          f"on {os.cpu_count()} cores")
    return {'results': out, 'ratios': ratios}


def main(model='cnn', bs=1024, rounds=7, steps=5, json=None):
    "Time every setting; print the table; write `json` if given."
    loads = [os.getloadavg()[0]]
    if 'RANK' in os.environ:                              # under torchrun: the group we are in
        nb_09.init_distributed(timeout=1200)
        torch.set_num_threads(1)
        res = bench_worker(model, bs, rounds, steps)
        world_size, rank = get_world_size(), get_rank()
        nb_09.cleanup_distributed()                     # a barrier, then destroy the group
        if rank != 0: return
    else:
        world_size = 2
        res = nb_09.launch(bench_worker, model, bs, rounds, steps, world_size=2, timeout=1200)[0]
    loads.append(os.getloadavg()[0])
    rows = {(k if k.startswith('1 proc') else f'{world_size} procs x 1 thread, {k}'): v
            for k, v in res.items()}
    summary = report(rows, bs, world_size, loads)
    if json:
        summary.update(model=model, global_bs=bs, rounds=rounds, steps=steps, world_size=world_size,
                       torch=torch.__version__, cpus=os.cpu_count(), load_before=loads[0],
                       load_after=loads[1], when=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
        Path(json).parent.mkdir(parents=True, exist_ok=True)
        Path(json).write_text(jsonlib.dumps(summary, indent=1) + '\n', encoding='utf-8')
        print('wrote', json)


if __name__ == '__main__':
    fire.Fire(main)
