"""Optimizer, Dataset, Sampler, collate and DataLoader of `exp.nb_03`: coverage, shuffling, edge cases, errors."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn, optim

from exp import nb_03

pytestmark = pytest.mark.nb03


def small_ds(n, d=3):
    return nb_03.Dataset(torch.arange(n * d, dtype=torch.float32).view(n, d), torch.arange(n))


def batch_idxs(sampler):
    "The list of index tensors that each batch of `sampler` stands for (slices included)."
    return [torch.arange(sampler.n)[b] for b in sampler]


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 100), bs=st.integers(1, 120), shuffle=st.booleans())
def test_sampler_covers_each_index_once_and_keeps_the_last_batch(n, bs, shuffle):
    s = nb_03.Sampler(small_ds(n), bs, shuffle=shuffle)
    batches = batch_idxs(s)
    sizes = [len(b) for b in batches]
    assert sizes == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    assert len(s) == len(batches)
    assert torch.equal(torch.cat(batches).sort()[0], torch.arange(n))
    if not shuffle: assert torch.equal(torch.cat(batches), torch.arange(n))


def test_shuffle_changes_the_order_every_epoch():
    s = nb_03.Sampler(small_ds(50), 8, shuffle=True)
    orders = [torch.cat(batch_idxs(s)) for _ in range(3)]
    assert not torch.equal(orders[0], torch.arange(50))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])


@pytest.mark.parametrize('bs', [0, -1, 2.0, True, None, '8'])
def test_bad_batch_size(bs):
    with pytest.raises(ValueError, match='batch size'):
        nb_03.Sampler(small_ds(5), bs)


def test_numpy_batch_size_is_accepted():
    np = pytest.importorskip('numpy')
    s = nb_03.Sampler(small_ds(10), np.int64(4))
    assert s.bs == 4 and type(s.bs) is int and len(s) == 3


def test_dataset_indexing_and_errors():
    ds = small_ds(10)
    assert len(ds) == 10
    xb, yb = ds[2:5]
    assert xb.shape == (3, 3) and torch.equal(yb, torch.tensor([2, 3, 4]))
    xb, yb = ds[torch.tensor([7, 1])]
    assert torch.equal(xb, ds.x[[7, 1]]) and torch.equal(yb, torch.tensor([7, 1]))
    x, y = ds[4]
    assert torch.equal(x, ds.x[4]) and y.item() == 4
    with pytest.raises(ValueError, match='10 vs 9'):
        nb_03.Dataset(torch.zeros(10, 3), torch.zeros(9))


def test_collate_per_sample_and_batched():
    ds = small_ds(6)
    xb, yb = nb_03.collate([ds[i] for i in [0, 3, 5]])
    assert torch.equal(xb, ds.x[[0, 3, 5]]) and torch.equal(yb, torch.tensor([0, 3, 5]))
    batch = ds[1:4]
    out = nb_03.collate(batch)
    assert out[0] is batch[0] and out[1] is batch[1]
    with pytest.raises(ValueError, match='empty'):
        nb_03.collate([])


@pytest.mark.parametrize('shuffle', [False, True])
def test_dataloader_yields_every_row_once(shuffle):
    ds = small_ds(23)
    dl = nb_03.DataLoader(ds, nb_03.Sampler(ds, 5, shuffle=shuffle))
    batches = list(dl)
    assert len(dl) == len(batches) == 5 and [len(yb) for _, yb in batches] == [5, 5, 5, 5, 3]
    ys = torch.cat([yb for _, yb in batches])
    assert torch.equal(ys.sort()[0], torch.arange(23))
    for xb, yb in batches: assert torch.equal(xb, ds.x[yb])   # x and y stay paired


def test_dataloader_with_a_per_sample_collate():
    ds = small_ds(7)
    per_sample = lambda b: nb_03.collate([(x, y) for x, y in zip(*b)])
    xb, yb = next(iter(nb_03.DataLoader(ds, nb_03.Sampler(ds, 4), collate_fn=per_sample)))
    assert torch.equal(xb, ds.x[:4]) and torch.equal(yb, ds.y[:4])


def test_dataloader_refuses_a_sampler_of_another_dataset():
    with pytest.raises(ValueError, match='covers 4 items but the dataset has 6'):
        nb_03.DataLoader(small_ds(6), nb_03.Sampler(small_ds(4), 2))


def test_optimizer_matches_sgd_and_keeps_a_generator():
    torch.manual_seed(0); m1 = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    torch.manual_seed(0); m2 = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    o1, o2 = nb_03.Optimizer(m1.parameters(), lr=0.3), optim.SGD(m2.parameters(), lr=0.3)
    assert isinstance(o1.params, list) and len(o1.params) == 4
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for _ in range(3):
        for m, o in ((m1, o1), (m2, o2)):
            nb_03.cross_entropy(m(x), y).backward()
            o.step()
            o.zero_grad()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)
    assert all(p.grad is None for p in o1.params)


def test_optimizer_skips_unused_params_and_refuses_empty():
    w, unused = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = nb_03.Optimizer([w, unused], lr=0.5)
    (w * torch.tensor([1., 2.])).sum().backward()
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([0.5, 0.])) and torch.equal(unused.detach(), torch.ones(2))
    gen = (p for p in [w])
    list(gen)
    with pytest.raises(ValueError, match='empty'):
        nb_03.Optimizer(gen, lr=0.1)
