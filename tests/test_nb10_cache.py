"""The model cache of `exp.nb_10`: round trip, checksum, atomic writes, and `cached_model` rebuilding a
missing or corrupt file instead of trusting it."""
import os

import pytest
import torch
from torch import nn

from exp import nb_10

pytestmark = pytest.mark.nb10



def _make():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


class Trainer:
    "A `train` for `cached_model` that counts its calls and sets known weights."
    def __init__(self): self.calls = 0
    def __call__(self, model):
        self.calls += 1
        with torch.no_grad(): model.weight.fill_(0.5); model.bias.fill_(-1.)


def test_save_and_load_round_trip(tmp_path):
    sd = _make().state_dict()
    path = nb_10.save_state(sd, tmp_path / 'm.pt')
    back = nb_10.load_state(path)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    assert path.read_bytes().startswith(nb_10.CACHE_MAGIC)


@pytest.mark.parametrize('damage', ['flip', 'truncate', 'garbage', 'empty'])
def test_load_rejects_a_damaged_file(tmp_path, damage):
    path = nb_10.save_state(_make().state_dict(), tmp_path / 'm.pt')
    data = bytearray(path.read_bytes())
    if damage == 'flip': data[-5] ^= 0x01
    elif damage == 'truncate': data = data[:-20]
    elif damage == 'garbage': data = bytearray(os.urandom(300))
    else: data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        nb_10.load_state(path)


def test_cached_model_trains_when_missing_then_hits(data, capsys):
    train = Trainer()
    m1 = nb_10.cached_model('lin', _make, train, {'a': 1}, device='cpu')
    assert train.calls == 1 and 'no cache yet' in capsys.readouterr().out
    path = nb_10.model_path('lin', {'a': 1})
    assert path.exists() and path.parent == data / 'models'
    m2 = nb_10.cached_model('lin', _make, train, {'a': 1}, device='cpu')
    assert train.calls == 1 and 'from the cache' in capsys.readouterr().out
    assert torch.equal(m1.weight, m2.weight) and torch.equal(m2.weight, torch.full((2, 3), 0.5))
    assert not m2.training                                # returned in eval mode


def test_other_settings_are_another_file(data):
    train = Trainer()
    nb_10.cached_model('lin', _make, train, {'a': 1}, device='cpu')
    nb_10.cached_model('lin', _make, train, {'a': 2}, device='cpu')
    assert train.calls == 2 and nb_10.model_path('lin', {'a': 1}) != nb_10.model_path('lin', {'a': 2})


@pytest.mark.parametrize('damage', ['garbage', 'wrong_checksum', 'other_architecture'])
def test_a_corrupt_cache_is_rebuilt(data, capsys, damage):
    train = Trainer()
    path = nb_10.model_path('lin', {})
    path.parent.mkdir(parents=True)
    if damage == 'garbage': path.write_bytes(os.urandom(1000))
    elif damage == 'wrong_checksum':
        nb_10.save_state({'weight': torch.zeros(2, 3), 'bias': torch.zeros(2)}, path)
        raw = path.read_bytes()
        n = len(nb_10.CACHE_MAGIC)
        path.write_bytes(raw[:n] + b'0' * 64 + raw[n + 64:])   # payload intact, checksum wrong
    else: nb_10.save_state(nn.Linear(5, 2).state_dict(), path)  # sound file, wrong shapes
    m = nb_10.cached_model('lin', _make, train, {}, device='cpu')
    assert train.calls == 1 and 'cache rejected' in capsys.readouterr().out
    assert torch.equal(m.weight, torch.full((2, 3), 0.5))        # the trained weights, not the file's
    assert torch.equal(nb_10.load_state(path)['weight'], m.weight)   # and the file was replaced


def test_write_is_atomic(data, monkeypatch):
    path = data / 'models' / 'm.pt'
    good = nb_10.save_state(_make().state_dict(), path).read_bytes()
    def boom(fd): raise OSError('disk full')
    monkeypatch.setattr(nb_10.os, 'fsync', boom)
    with pytest.raises(OSError, match='disk full'):
        nb_10.save_state(nn.Linear(3, 2).state_dict(), path)
    assert path.read_bytes() == good                      # the old file, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ['m.pt']   # no partial file left
    path.unlink()
    with pytest.raises(OSError, match='disk full'):
        nb_10.save_state(nn.Linear(3, 2).state_dict(), path)
    assert list(path.parent.iterdir()) == []              # none at all, rather than half of one


def test_load_uses_weights_only(tmp_path):
    "A pickle that would run code is refused: torch's weights_only unpickler, after a valid checksum."
    import hashlib, io
    class Evil:
        def __reduce__(self): return (print, ('pwned',))
    buf = io.BytesIO(); torch.save({'x': Evil()}, buf)
    payload = buf.getvalue()
    path = tmp_path / 'evil.pt'
    path.write_bytes(nb_10.CACHE_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b'\n'
                     + payload)
    with pytest.raises(Exception, match='(?i)weights_only|unpickl|global'):
        nb_10.load_state(path)


def test_train_vae_caches_a_tiny_vae(data, capsys):
    vae = nb_10.train_vae(epochs=1, nh=16, nl=4, bs=1024, device='cpu')
    assert 'no cache yet' in capsys.readouterr().out and vae.nl == 4
    again = nb_10.train_vae(epochs=1, nh=16, nl=4, bs=1024, device='cpu')
    assert 'from the cache' in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(),
                                                 again.state_dict().values()))
