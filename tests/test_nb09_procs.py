"""`exp.nb_09` with real process groups: 2 processes, gloo, 127.0.0.1, a free port, a timeout each.

Each `launch` costs seconds (two Pythons importing torch), so one launch checks several things.
"""
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from exp import nb_09

pytestmark = [pytest.mark.nb09, pytest.mark.usefixtures("watchdog")]
WATCHDOG_S = 150  # seconds before a hung test ends pytest (conftest's `watchdog`)
ROOT = Path(__file__).resolve().parents[1]


def data(n=96, n_in=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, dtype=torch.float64, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


def model_of(n_in=8):
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(n_in, 6), nn.ReLU(), nn.Linear(6, 3)).double()


class SeenRows(nb_09.Callback):
    "Records the training rows this rank saw, per epoch (column 0 of x holds the row id / 1000)."
    def __init__(self): self.epochs = []
    def before_epoch(self, learn):
        if learn.training: self.epochs.append([])
    def before_batch(self, learn):
        if learn.training: self.epochs[-1] += (learn.batch[0][:, 0] * 1000).round().long().tolist()


def shard_gradients(model, x, y, sizes):
    "This rank's gradients on its shard (`sizes[rank]` rows), averaged by hand, weighted by size."
    rank = nb_09.get_rank()
    start = sum(sizes[:rank])
    xs, ys = x[start:start + sizes[rank]], y[start:start + sizes[rank]]
    F.cross_entropy(model(xs), ys).backward()
    nb_09.average_gradients(model, n=len(xs))
    return [p.grad.clone() for p in model.parameters()]


def training_worker(model, x, y, xv, yv, bs, lr, epochs):
    "Runs on every rank: the hand-written loop, the DDP loop and the Learner with DistributedCB."
    return {'weighted': shard_gradients(copy.deepcopy(model), x, y, [30, 7]),
            'by_hand': nb_09.train_by_hand(copy.deepcopy(model), x, y, bs, lr, epochs),
            'ddp': nb_09.train_ddp(copy.deepcopy(model), x, y, bs, lr, epochs),
            'learner': nb_09.fit_with_cb(copy.deepcopy(model), x, y, xv, yv, bs, lr, epochs, seed=0,
                                         cbs=[SeenRows()])}


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a: assert torch.allclose(a[k], b[k], rtol=0, atol=atol), (k, (a[k] - b[k]).abs().max())


@pytest.fixture(scope='module')
def two_ranks():
    "One launch of `training_worker` on 2 ranks (96 training rows; 31 validation rows: odd)."
    model, (x, y), (xv, yv) = model_of(), data(), data(31, seed=2)
    x[:, 0] = torch.arange(len(x), dtype=torch.float64) / 1000          # row ids, for SeenRows
    res = nb_09.launch(training_worker, model, x, y, xv, yv, 16, 0.2, 3, world_size=2, timeout=120)
    return model, (x, y, xv, yv), res


def test_two_ranks_train_like_one_process_on_the_global_batch(two_ranks):
    model, (x, y, xv, yv), res = two_ranks
    one = nb_09.train_by_hand(copy.deepcopy(model), x, y, 16, 0.2, 3)   # world of 1, batches of 16
    weights = [{**r, 'learner': r['learner']['weights']} for r in res]
    for loop in ['by_hand', 'ddp', 'learner']:
        assert_same_weights(weights[0][loop], weights[1][loop], atol=0)   # identical on both ranks
        assert_same_weights(weights[0][loop], one)                         # float64, 1e-6
    assert (one['0.weight'] - model[0].weight).abs().max() > 1e-2      # and training moved them


def test_weighted_average_of_unequal_shards_is_the_whole_batch_gradient(two_ranks):
    model, (x, y, xv, yv), res = two_ranks
    model = copy.deepcopy(model)
    F.cross_entropy(model(x[:37]), y[:37]).backward()                  # one process, 30 + 7 rows
    for g0, g1, p in zip(res[0]['weighted'], res[1]['weighted'], model.parameters()):
        assert torch.equal(g0, g1) and torch.allclose(g0, p.grad, rtol=0, atol=1e-12)


def test_validation_metrics_equal_on_ranks_and_to_one_process(two_ranks):
    model, (x, y, xv, yv), res = two_ranks
    h0, h1 = res[0]['learner']['history'], res[1]['learner']['history']
    assert h0 == h1 and len(h0) == 3                         # every rank reports the same
    trained = copy.deepcopy(model)
    trained.load_state_dict(res[0]['learner']['weights'])
    with torch.no_grad(): out = trained(xv)                             # one process, all 31 rows
    assert h0[-1]['valid_loss'] == pytest.approx(F.cross_entropy(out, yv).item(), abs=1e-9)
    acc = (out.argmax(1) == yv).double().mean().item()
    assert h0[-1]['valid_accuracy'] == pytest.approx(acc, abs=1e-12)


def test_every_training_row_seen_once_per_epoch_in_a_new_order(two_ranks):
    model, (x, y, xv, yv), res = two_ranks
    seen = [r['learner']['cbs'][0].epochs for r in res]                # [rank][epoch] -> row ids
    orders = []
    for epoch in range(3):
        rows = seen[0][epoch] + seen[1][epoch]
        assert sorted(rows) == list(range(len(x)))                      # 96 rows: each exactly once
        orders.append(seen[0][epoch])
    assert orders[0] != orders[1] != orders[2]


def test_a_rank_that_raises_ends_the_run_fast_and_frees_the_port():
    port = nb_09.free_port()
    t0 = time.monotonic()
    msg = r'^launch: rank 1 of 2 failed: ValueError: rank 1 gives up'
    with pytest.raises(RuntimeError, match=msg):
        nb_09.launch(nb_09.fail_on_rank, 1, world_size=2, port=port, timeout=60)
    assert time.monotonic() - t0 < 30   # rank 0 waited in an all_reduce: stopped, not timed out
    assert nb_09.port_is_free(port)


def test_launch_timeout_stops_every_rank():
    with pytest.raises(TimeoutError, match=r'ranks \[0, 1\] of 2 still running after 4s'):
        nb_09.launch(time.sleep, 60, world_size=2, timeout=4)


def test_launch_bad_world_size():
    with pytest.raises(ValueError, match='world_size must be an int >= 1'):
        nb_09.launch(print, world_size=0)


def bn_worker(x, y, xv, yv):
    "Runs on every rank: 07's batch-norm CNN from torch DataLoaders, without and with the sync."
    return {sync: nb_09.fit_bn_cnn(x, y, xv, yv, bs=16, lr=0.1, n_epochs=2, sync_bn=sync)
            for sync in (False, True)}


def test_batchnorm_cnn_from_torch_loaders_ends_identical_on_both_ranks():
    g = torch.Generator().manual_seed(3)
    x, xv = torch.randn(64, 1, 28, 28, generator=g), torch.randn(20, 1, 28, 28, generator=g)
    y, yv = torch.randint(0, 10, (64,), generator=g), torch.randint(0, 10, (20,), generator=g)
    r0, r1 = nb_09.launch(bn_worker, x, y, xv, yv, world_size=2, timeout=120)
    model = nb_09.cnn_model(norm=nb_09.BatchNorm)
    buffers = {n for n, _ in model.named_buffers()}
    assert len(buffers) == 8 and buffers <= r0[True]['state'].keys()   # 4 BatchNorms, 2 each
    for k, v in r0[True]['state'].items():
        assert torch.equal(v, r1[True]['state'][k]), k                # parameters AND buffers
    assert r0[True]['history'] == r1[True]['history'] and len(r0[True]['history']) == 2
    assert r0[True]['state']['0.1.running_mean'].abs().sum() > 0      # the statistics moved
    unsynced = [k for k in buffers if not torch.equal(r0[False]['state'][k], r1[False]['state'][k])]
    assert unsynced                        # DDP alone leaves each rank its last batch's statistics


SCRIPT = '''
import sys, torch
import torch.nn.functional as F
from exp import nb_09
torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
x, y = torch.randn(64, 8, dtype=torch.float64, generator=g), torch.randint(0, 3, (64,), generator=g)
model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).double()
dls = nb_09.get_dls(x, y, x[:10], y[:10], 16)
learn = nb_09.Learner(model, dls, F.cross_entropy, lr=0.1,
                      cbs=[nb_09.DistributedCB(seed=0), nb_09.MetricsCB()])   # joins from the env
learn.fit(2)
rank = nb_09.get_rank()
torch.save(learn.model.state_dict(), f'{sys.argv[1]}/rank{rank}.pt')
print(f'rank {rank} of {nb_09.get_world_size()} done')
nb_09.cleanup_distributed()
'''


def test_two_torchrun_agents_as_two_nodes(tmp_path):
    "Two `torchrun` agents (`--nnodes=2 --nproc_per_node=1`) meet by c10d rendezvous on 127.0.0.1."
    script = tmp_path / 'train.py'
    script.write_text(SCRIPT, encoding='utf-8')
    port = nb_09.free_port()
    torchrun = Path(sys.executable).with_name('torchrun')
    cmd = [str(torchrun), '--nnodes=2', '--nproc_per_node=1', '--rdzv_backend=c10d',
           f'--rdzv_endpoint=127.0.0.1:{port}', '--rdzv_id=nb09test', '--local_addr=127.0.0.1',
           '--max_restarts=0', str(script), str(tmp_path)]
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    agents = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outs = [a.communicate(timeout=120)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None: a.kill(); a.wait()
    assert all(a.returncode == 0 for a in agents), outs
    w0, w1 = torch.load(tmp_path / 'rank0.pt'), torch.load(tmp_path / 'rank1.pt')
    assert_same_weights(w0, w1, atol=0)
    out = outs[0] + outs[1]
    assert 'rank 0 of 2 done' in out and 'rank 1 of 2 done' in out
    assert out.count('valid_accuracy') == 2          # 2 epochs, printed by rank 0 alone
    assert nb_09.port_is_free(port)
