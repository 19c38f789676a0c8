"""`exp.nb_09` in one process: sharding against torch's `DistributedSampler`, helpers, errors."""
import os
import socket
import time

import pytest
import torch

from exp import nb_09

pytestmark = [pytest.mark.nb09, pytest.mark.usefixtures("watchdog")]
WATCHDOG_S = 60  # seconds before a hung test ends pytest (conftest's `watchdog`)


def ds_of(n):
    return nb_09.Dataset(torch.arange(n), torch.arange(n))


@pytest.mark.parametrize('n,world_size,bs',
                         [(10, 2, 3), (11, 3, 2), (5, 4, 1), (64, 2, 16), (7, 1, 4)])
def test_shards_equal_torch_distributed_sampler(n, world_size, bs):
    for epoch in range(3):
        for rank in range(world_size):
            ours = nb_09.ShardSampler(ds_of(n), bs, rank=rank, world_size=world_size, seed=3)
            theirs = torch.utils.data.DistributedSampler(ds_of(n), world_size, rank, seed=3)
            ours.set_epoch(epoch); theirs.set_epoch(epoch)
            batches = list(ours)
            assert torch.cat(batches).tolist() == list(theirs)
            assert len(ours) == len(batches) and all(len(b) <= bs for b in batches)


@pytest.mark.parametrize('world_size', [2, 3])
def test_every_sample_once_per_epoch_in_a_new_order(world_size):
    n, orders = 60, []
    for epoch in range(3):
        seen = []
        for rank in range(world_size):
            s = nb_09.ShardSampler(ds_of(n), 7, rank=rank, world_size=world_size, seed=0)
            s.set_epoch(epoch)
            seen.append(torch.cat(list(s)))
        assert sorted(torch.cat(seen).tolist()) == list(range(n))       # exactly once across ranks
        orders.append(torch.stack(seen).T.flatten().tolist())           # the shared permutation
    assert orders[0] != orders[1] != orders[2] != orders[0]


def test_global_batches_match_one_process():
    "The k-th batches of all ranks together are the k-th batch of one process at the global size."
    n, world_size, b = 50, 2, 4
    one = list(nb_09.ShardSampler(ds_of(n), world_size * b, rank=0, world_size=1, seed=5))
    ranks = [list(nb_09.ShardSampler(ds_of(n), b, rank=r, world_size=world_size, seed=5))
             for r in range(world_size)]
    assert all(len(r) == len(one) for r in ranks)
    for k, whole in enumerate(one):
        assert sorted(torch.cat([r[k] for r in ranks]).tolist()) == sorted(whole.tolist())


@pytest.mark.parametrize('n,world_size', [(10, 3), (7, 2), (5, 4)])
def test_padding_and_no_padding(n, world_size):
    padded = [torch.cat(list(nb_09.ShardSampler(ds_of(n), 2, rank=r, world_size=world_size)))
              for r in range(world_size)]
    assert len({len(p) for p in padded}) == 1                 # as many steps on every rank
    seen = torch.cat(padded).tolist()
    assert set(seen) == set(range(n)) and len(seen) - n == -n % world_size   # repeats: to even out
    unpadded = [torch.cat(list(nb_09.ShardSampler(ds_of(n), 2, rank=r, world_size=world_size,
                                                   shuffle=False, pad=False)))
                for r in range(world_size)]
    assert sorted(torch.cat(unpadded).tolist()) == list(range(n))   # validation: each exactly once


def test_sampler_errors():
    with pytest.raises(ValueError, match='world size 4 is larger than the 3 items'):
        nb_09.ShardSampler(ds_of(3), 1, rank=0, world_size=4)
    with pytest.raises(ValueError, match='batch size'):
        nb_09.ShardSampler(ds_of(3), 0, rank=0, world_size=1)
    with pytest.raises(ValueError, match='rank < world_size'):
        nb_09.ShardSampler(ds_of(3), 1, rank=2, world_size=2)


def test_defaults_outside_a_group():
    assert (nb_09.get_rank(), nb_09.get_world_size()) == (0, 1)
    assert nb_09.def_backend == ('nccl' if torch.cuda.is_available() else 'gloo')
    model = torch.nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    nb_09.average_gradients(model)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))


def test_ports():
    port = nb_09.free_port()
    assert nb_09.port_is_free(port)
    with socket.socket() as s:
        s.bind(('127.0.0.1', port)); s.listen()
        assert not nb_09.port_is_free(port)


def test_init_errors(monkeypatch):
    for k in ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError, match='RANK is not set'):
        nb_09.init_distributed()
    with pytest.raises(ValueError, match='0 <= rank < world_size'):
        nb_09.init_distributed(rank=3, world_size=2, addr='127.0.0.1', port=nb_09.free_port())


@pytest.mark.parametrize('addr', ['127.0.0.1', '127.0.0.77'])
def test_unreachable_master_addr_names_it(addr):
    "Rank 1 where nobody listens (a loopback address, an unused port): one line after the timeout."
    port = nb_09.free_port()
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f'MASTER_ADDR {addr}:{port} within 1s'):
        nb_09.init_distributed(rank=1, world_size=2, addr=addr, port=port, timeout=1)
    assert time.monotonic() - t0 < 30
    assert not nb_09.dist.is_initialized()


def small_learner(cbs, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, xv = torch.randn(512, 20, generator=g), torch.randn(128, 20, generator=g)
    w = torch.randn(20, 4, generator=g)
    y, yv = (x @ w).argmax(1), (xv @ w).argmax(1)                     # a learnable 4-class problem
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    return nb_09.Learner(model, nb_09.get_dls(x, y, xv, yv, 32), lr=0.5,
                         cbs=[nb_09.MetricsCB(show=False), *cbs])


def test_distributed_cb_without_launcher_trains_in_one_process_with_a_note(monkeypatch, capsys):
    for k in ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']:
        monkeypatch.delenv(k, raising=False)
    learn, plain = small_learner([nb_09.DistributedCB(seed=1)]), small_learner([])
    model = learn.model
    learn.fit(4)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ['DistributedCB: no launcher (RANK is not set): training in this one process']
    assert learn.model is model and not isinstance(learn.model, nb_09.DDP)   # unwrapped after fit
    assert not nb_09.dist.is_initialized()
    plain.fit(4)
    assert learn.metrics.last['valid_accuracy'] > 0.8 and plain.metrics.last['valid_accuracy'] > 0.8


def test_distributed_cb_batch_size_must_divide(monkeypatch):
    monkeypatch.setattr(nb_09, 'get_world_size', lambda: 3)
    learn = small_learner([nb_09.DistributedCB(seed=1)])
    with pytest.raises(ValueError, match='batch size 32 is not divisible by the world size 3'):
        learn.fit(1)


def test_distributed_cb_world_larger_than_the_data(monkeypatch):
    monkeypatch.setattr(nb_09, 'get_world_size', lambda: 4)
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    learn = nb_09.Learner(torch.nn.Linear(3, 2), nb_09.get_dls(x, y, x, y, 4),
                          cbs=[nb_09.DistributedCB(seed=1)])
    with pytest.raises(ValueError, match='world size 4 is larger than the 2 items'):
        learn.fit(1)


def test_mixed_precision_on_cpu_keeps_float32_parameters_and_the_loss():
    "bfloat16 has 8 bits of mantissa (2-3 digits): after 4 epochs the losses agree within 15%."
    seen = []
    class Dtypes(nb_09.Callback):
        def after_loss(self, learn): seen.append((learn.preds.dtype, learn.loss.dtype))
    mixed, full = small_learner([nb_09.MixedPrecisionCB(), Dtypes()]), small_learner([])
    mixed.fit(4); full.fit(4)
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    assert seen[0] == (torch.bfloat16, torch.float32)   # autocast: matmuls in bf16, loss in f32
    for k in ['train_loss', 'valid_loss']:
        assert mixed.metrics.last[k] == pytest.approx(full.metrics.last[k], rel=0.15), k
    assert mixed.metrics.last[k] != full.metrics.last[k]          # it really ran in lower precision
    assert mixed.metrics.last['valid_accuracy'] > 0.8


class FailAt(nb_09.Callback):
    "Raise ZeroDivisionError in the `n`-th (0-based) training batch, after its loss."
    def __init__(self, n): self.n, self.seen = n, 0
    def after_loss(self, learn):
        if learn.training:
            self.seen += 1
            if self.seen > self.n: raise ZeroDivisionError('a bug in a callback')


def test_distributed_cb_unwraps_ddp_after_a_fit_that_raises(monkeypatch):
    for k in ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']:
        monkeypatch.delenv(k, raising=False)
    nb_09.dist.init_process_group('gloo', store=nb_09.dist.HashStore(), rank=0, world_size=1)
    try:                                          # a group of one, in this process: DDP for real
        seen = []
        class SeeModel(nb_09.Callback):
            def before_epoch(self, learn): seen.append(type(learn.model))
        learn = small_learner([nb_09.DistributedCB(seed=1), SeeModel()])
        model, dls = learn.model, learn.dls
        with pytest.raises(ZeroDivisionError): learn.fit(1, cbs=FailAt(2))
        assert seen == [nb_09.DDP]                    # it was wrapped during the fit...
        assert learn.model is model and learn.dls is dls and not learn.quiet   # ...and is no more
        learn.fit(1)                                  # and the learner still trains
        assert learn.model is model and seen[-2:] == [nb_09.DDP, type(model)]
    finally: nb_09.dist.destroy_process_group()
    assert not nb_09.dist.is_initialized()


def test_distributed_cb_other_ranks_print_nothing(monkeypatch, capsys):
    for k in ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(nb_09, 'get_rank', lambda: 1)    # as if this process were rank 1 of 2
    monkeypatch.setattr(nb_09, 'get_world_size', lambda: 2)
    monkeypatch.setattr(nb_09, '_reduce_metric', lambda m, device: None)   # no group to sum over
    learn = nb_09.Learner(small_learner([]).model, small_learner([]).dls, lr=0.5,
                          cbs=[nb_09.DistributedCB(seed=1), nb_09.MetricsCB(), nb_09.ProgressCB()])
    learn.fit(2)
    out = capsys.readouterr().out
    assert out == 'DistributedCB: no launcher (RANK is not set): training in this one process\n'
    assert not learn.quiet and len(learn.metrics.history) == 2   # numbers kept; quiet undone
    with pytest.raises(ZeroDivisionError): learn.fit(1, cbs=FailAt(0))
    assert not learn.quiet and capsys.readouterr().out.count('\n') == 1     # the note only


def torch_loader(n=10, **kwargs):
    tds = torch.utils.data.TensorDataset(torch.arange(float(n)), torch.arange(n))
    return torch.utils.data.DataLoader(tds, **kwargs)


def doubled(b):
    "A collate_fn of our own: it stacks, and doubles x, so a test can see that it was kept."
    return torch.stack([x for x, _ in b]) * 2, torch.stack([y for _, y in b])


@pytest.mark.parametrize('shuffle,drop_last', [(True, False), (False, True)])
def test_shard_loader_keeps_torch_loader_settings(shuffle, drop_last):
    dl = torch_loader(11, batch_size=4, shuffle=shuffle, collate_fn=doubled, drop_last=drop_last)
    rows = []
    for rank in range(2):
        shard, sampler = nb_09.shard_loader(dl, rank, 2, seed=3)
        assert isinstance(sampler, torch.utils.data.DistributedSampler)
        assert sampler.shuffle == shuffle and shard.drop_last == drop_last
        assert shard.batch_size == 2 and shard.collate_fn is doubled
        sampler.set_epoch(1)
        batches = list(shard)
        assert all(len(xb) == 2 for xb, _ in batches) or not drop_last
        for xb, yb in batches: assert torch.equal(xb, 2 * yb.float())      # collate_fn applied
        ours = nb_09.ShardSampler(dl.dataset, 2, rank=rank, world_size=2, shuffle=shuffle, seed=3)
        ours.set_epoch(1)
        theirs = torch.cat([yb for _, yb in batches]).tolist()
        expect = torch.cat(list(ours)).tolist()                            # the same shard as ours
        assert theirs == (expect[:len(expect) // 2 * 2] if drop_last else expect)
        rows += theirs
    if not drop_last: assert set(rows) == set(range(11)) and len(rows) == 12   # one row padded


def test_shard_loader_validation_takes_every_row_once():
    dl = torch_loader(10, batch_size=3)
    seen = []
    for rank in range(3):
        shard, _ = nb_09.shard_loader(dl, rank, 3, train=False)
        seen += [int(v) for _, yb in shard for v in yb]
    assert sorted(seen) == list(range(10))


@pytest.mark.parametrize('kwargs,match', [
    (dict(batch_sampler=[[0, 1], [2, 3]]), 'its own batch_sampler'),
    (dict(batch_size=2, sampler=torch.utils.data.RandomSampler(range(10), replacement=True)),
     'its sampler is a RandomSampler'),
    (dict(batch_size=2, sampler=[3, 1, 2]), 'its sampler is a list')])
def test_shard_loader_refuses_what_it_cannot_shard(kwargs, match):
    with pytest.raises(TypeError, match=match): nb_09.shard_loader(torch_loader(**kwargs), 0, 2)


def test_distributed_cb_with_torch_loaders_in_one_process(monkeypatch, capsys):
    for k in ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']:
        monkeypatch.delenv(k, raising=False)
    plain = small_learner([])
    tds = lambda dl: torch.utils.data.TensorDataset(dl.ds.x, dl.ds.y)
    dls = nb_09.DataLoaders(torch.utils.data.DataLoader(tds(plain.dls.train), 32, shuffle=True),
                            torch.utils.data.DataLoader(tds(plain.dls.valid), 64))
    learn = nb_09.Learner(plain.model, dls, lr=0.5,
                          cbs=[nb_09.DistributedCB(seed=1), nb_09.MetricsCB(show=False)])
    learn.fit(4)
    assert learn.dls is dls and learn.metrics.last['valid_accuracy'] > 0.8


def test_distributed_cb_names_a_loader_it_cannot_shard(monkeypatch):
    monkeypatch.setattr(nb_09, 'get_world_size', lambda: 2)
    learn = small_learner([nb_09.DistributedCB(seed=1)])
    learn.dls.train = torch_loader(batch_sampler=[[0, 1], [2, 3]])
    with pytest.raises(TypeError, match='cannot shard the training loader: it has its own'):
        learn.fit(1)
