"""Issue 19: `launch` never aborts. 40 short launches in a row (`train_by_hand`, 256 rows, 2 ranks),
alone and beside a CPU-burning process: no failure, and no rank process left running afterwards.

Slow (each launch starts two Pythons that import torch: seconds each, minutes in all); run it alone:
`python -m pytest -q tests/test_nb09_stress.py`.
"""
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

from exp import nb_09

pytestmark = [pytest.mark.nb09, pytest.mark.usefixtures("watchdog")]
WATCHDOG_S = 1800  # seconds before a hung test ends pytest (conftest's `watchdog`), per test
N_LAUNCHES = 40


def rank_processes():
    "The ranks this process spawned that are still alive (not multiprocessing's resource tracker)."
    kids = [p.pid for p in multiprocessing.active_children()]
    if os.path.isdir('/proc'):                       # also any other child, seen by the kernel
        me = str(os.getpid())
        for d in os.listdir('/proc'):
            if d.isdigit():
                try:
                    with open(f'/proc/{d}/stat', encoding='utf-8') as f: stat = f.read()
                    with open(f'/proc/{d}/cmdline', 'rb') as f: cmd = f.read()
                except OSError: continue
                if stat.rsplit(')', 1)[1].split()[1] == me and b'spawn_main' in cmd:
                    kids.append(int(d))
    return sorted(set(kids))


def launches(n):
    "Run `n` short launches in a row; the first line of each failure, numbered."
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g)
    model, failures, fails = nb_09.get_mlp(nh=32), [], 0
    for i in range(n):
        try:
            r0, r1 = nb_09.launch(nb_09.train_by_hand, model, x, y, 64, 0.1, 1, world_size=2,
                                  timeout=90)
            assert all(torch.equal(r0[k], r1[k]) for k in r0)   # and the run itself was right
        except RuntimeError as e: failures.append(f"launch {i}: {str(e).splitlines()[0]}")
        print(f"launch {i}: {'ok' if len(failures) == fails else failures[-1]}", file=sys.stderr,
              flush=True)                            # progress, for `pytest -s`
        fails = len(failures)
    return failures


def test_launches_in_a_row_never_abort():
    assert launches(N_LAUNCHES) == []
    assert rank_processes() == []


def test_launches_beside_a_cpu_burner_never_abort():
    burner = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try: failures = launches(N_LAUNCHES)
    finally: burner.kill(); burner.wait()
    assert failures == []
    assert rank_processes() == []
