"""Issue 19: `launch` never aborts. 40 short launches in a row (`train_by_hand`, 256 rows, 2 ranks),
alone and beside a CPU-burning process: no failure, and no rank process left running afterwards.
The cause of the aborts: a group that `destroy_process_group` could not free, because torch modules
imported after it (by the first optimizer) stored it in default arguments; its threads then ended
during Python's exit. `cleanup_distributed` must leave no reference to the group and no gloo thread.

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


def one_rank(how):
    "References to a destroyed one-rank group, and its gloo threads, after it built an optimizer."
    return nb_09.left_behind_in_a_fresh_python(how)


def test_init_distributed_lets_destroy_free_the_group():
    refs, threads = one_rank('ours')
    assert refs == 0 and not threads, (refs, threads)


def test_torch_alone_still_pins_the_group():
    "Why `init_distributed` imports `_pins_default_group` first; if this fails, torch fixed it."
    refs, threads = one_rank('torch')
    assert refs > 0, ("torch no longer keeps a destroyed group alive when torch.optim imports "
                      "torch._dynamo after init: nb_09's _pins_default_group may be unneeded")
    if threads is not None: assert threads, threads


def test_fresh_python_names_a_bad_how():
    with pytest.raises(ValueError, match="got 'mine'"): nb_09.left_behind_in_a_fresh_python('mine')


def data(n=256, seed=1):
    "`n` rows of 784 inputs and 10 classes, from generator `seed`."
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_cleanup_frees_the_group_after_train_by_hand():
    x, y = data()
    torch.manual_seed(0)
    ranks = nb_09.launch(nb_09.group_left_behind, nb_09.train_by_hand, nb_09.get_mlp(nh=32), x, y,
                         64, 0.1, 1, world_size=2, timeout=120)
    for refs, threads in ranks: assert refs == 0 and not threads, ranks


def test_cleanup_frees_the_group_after_a_learner_with_distributed_cb():
    (x, y), (xv, yv) = data(), data(64, seed=2)
    torch.manual_seed(0)
    ranks = nb_09.launch(nb_09.group_left_behind, nb_09.fit_with_cb, nb_09.get_mlp(nh=32), x, y,
                         xv, yv, 64, 0.1, world_size=2, timeout=120)
    for refs, threads in ranks: assert refs == 0 and not threads, ranks


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
    x, y = data()
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
