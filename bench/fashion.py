#!/usr/bin/env python
"""Full Fashion-MNIST runs of `08_resnet`'s ResNet, longer than a notebook should hold (run by hand).

    python bench/fashion.py                          # both runs, on def_device
    python bench/fashion.py --runs resnet --epochs 5 --device cpu --threads 2
    python bench/fashion.py --runs augment --aug_epochs 20 --width 0.5

Two runs, each seeded, one-cycle AdamW, batch size 1024, on all 60,000 training images, scored on the
10,000 test images:
- `resnet`: the ResNet for `--epochs` (5) epochs; target >= 93.0% (course22p2 `13_resnet`: 92.8% in 5).
- `augment`: random crop (pad 1) and horizontal flip for `--aug_epochs` (20) epochs, scored plain and
  with test-time augmentation; target >= 94.5% (course22p2 `14_augment`: 94.3%, 94.5% with TTA).
Prints each epoch, images per second and each run's time; writes `bench/results/fashion_<device>.json`
(device, torch version, threads, load average, git commit, and per run: accuracies, losses, times).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch                                    # noqa: E402
import torch.nn.functional as F                 # noqa: E402
from torch import nn                            # noqa: E402

from exp import nb_08                           # noqa: E402

FASHION_DIRS = [os.environ.get('FASHION_MNIST', ''), '/usr/share/datasets/fashion-mnist',
                str(nb_08.data_dir() / 'fashion-mnist')]


def default_device():
    "`def_device` from the library when it defines one, else CUDA, then MPS, then CPU."
    dev = getattr(nb_08, 'def_device', None)
    if dev is not None: return str(dev)
    if torch.cuda.is_available(): return 'cuda'
    if getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available(): return 'mps'
    return 'cpu'


def load_fashion():
    "Fashion-MNIST as `x_train (60000, 784), y_train, x_test (10000, 784), y_test`, floats in [0, 1]."
    if hasattr(nb_08, 'get_fashion_mnist'):
        return nb_08.get_fashion_mnist()
    for d in filter(None, FASHION_DIRS):
        d = Path(d)
        if (d / 'train-images-idx3-ubyte.gz').exists(): break
    else: raise SystemExit(f"Fashion-MNIST not found in {FASHION_DIRS}; set $FASHION_MNIST to its folder")
    def xy(split):
        x = nb_08.read_idx(d / f'{split}-images-idx3-ubyte.gz', 2051)
        y = nb_08.read_idx(d / f'{split}-labels-idx1-ubyte.gz', 2049)
        return torch.from_numpy(x.reshape(len(x), -1)).float() / 255, torch.from_numpy(y).long()
    return (*xy('train'), *xy('t10k'))


def evaluate(model, x, y, bs=2048, tta=False):
    "Accuracy and mean loss of `model` on `x`, `y` (with `tta`: the accuracy of flip-averaged predictions)."
    model.eval()
    correct, loss, correct_tta = 0, 0., 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb, yb = x[i:i + bs], y[i:i + bs]
            out = model(xb)
            loss += F.cross_entropy(out, yb, reduction='sum').item()
            correct += (out.argmax(-1) == yb).sum().item()
            if tta: correct_tta += (nb_08.tta_predict(model, xb).argmax(-1) == yb).sum().item()
    res = dict(accuracy=correct / len(x), loss=loss / len(x))
    if tta: res['accuracy_tta'] = correct_tta / len(x)
    return res


def train(data, epochs, width, lr, bs, aug, seed, device, log, save=None):
    "Train a fresh ResNet; return a dict of what happened (and pass the dict so far to `save` after each epoch)."
    torch.manual_seed(seed)
    xt, yt, xv, yv = data
    nfs = tuple(max(1, round(w * width)) for w in (16, 32, 64, 128, 256, 512))
    model = nb_08.resnet(nfs).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * (len(xt) // bs)              # the last, partial batch is dropped
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    hist, t_train = [], 0.
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(xt), device=device)
        tot, n = 0., 0
        for i in range(0, len(xt) - bs + 1, bs):
            idx = perm[i:i + bs]
            xb, yb = xt[idx], yt[idx]
            if aug: xb = nb_08.augment(xb)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step(); opt.zero_grad(); sched.step()
            tot += loss.item() * len(yb); n += len(yb)
        secs = time.perf_counter() - t0
        t_train += secs
        ev = evaluate(model, xv, yv, tta=aug and epoch == epochs - 1)
        hist.append(dict(epoch=epoch + 1, train_loss=tot / n, seconds=secs, **ev))
        log(f"  epoch {epoch + 1:>3}/{epochs}  train_loss {tot / n:.4f}  test_loss {ev['loss']:.4f}  "
            f"test_acc {ev['accuracy']:.4f}" + (f"  tta {ev['accuracy_tta']:.4f}" if 'accuracy_tta' in ev else '')
            + f"  {secs:.1f}s  {n / secs:,.0f} img/s")
        if save: save(dict(epochs_done=epoch + 1, complete=False, train_seconds=round(t_train, 1),
                           images_per_second=round((epoch + 1) * n / t_train, 1), history=hist))
    res = dict(epochs=epochs, width=width, nfs=list(nfs), lr=lr, bs=bs, augment=aug, seed=seed,
               params=sum(p.numel() for p in model.parameters()),
               mflops=round(nb_08.summary(model, xv[:1]).mflops, 3),
               train_seconds=round(t_train, 1), images_per_second=round(epochs * n / t_train, 1),
               test_accuracy=hist[-1]['accuracy'], epochs_done=epochs, complete=True, history=hist)
    if aug: res['test_accuracy_tta'] = hist[-1]['accuracy_tta']
    return res


def git_commit():
    "The commit this script runs from (with `+dirty` if the tree has changes), or None."
    try:
        c = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout
        d = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT,
                           capture_output=True, text=True).stdout
        return c.strip() + ('+dirty' if d.strip() else '') if c else None
    except OSError: return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--runs', default='resnet,augment', help='comma-separated: resnet, augment')
    p.add_argument('--epochs', type=int, default=5, help='epochs of the plain ResNet run')
    p.add_argument('--aug_epochs', type=int, default=20, help='epochs of the augmentation run')
    p.add_argument('--width', type=float, default=1.0, help='channel multiplier (1: 16, 32, ..., 512)')
    p.add_argument('--lr', type=float, default=1e-2, help='one-cycle peak learning rate')
    p.add_argument('--bs', type=int, default=1024)
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--device', default=None, help='default: def_device (CUDA, then MPS, then CPU)')
    p.add_argument('--threads', type=int, default=None, help='torch threads on CPU (default: torch decides)')
    p.add_argument('--limit', type=int, default=None, help='use only the first N train and test images (smoke test)')
    p.add_argument('--out', default=None, help='JSON path (default: bench/results/fashion_<device>.json)')
    a = p.parse_args(argv)
    runs = [r.strip() for r in a.runs.split(',') if r.strip()]
    bad = [r for r in runs if r not in ('resnet', 'augment')]
    if bad: p.error(f"unknown run(s) {bad}; choose from resnet, augment")
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device or default_device())
    out = Path(a.out) if a.out else ROOT / 'bench' / 'results' / f'fashion_{device.type}.json'

    def log(s): print(s, flush=True)
    data = load_fashion()
    if a.limit: data = [t[:a.limit] for t in data]
    mean, std = data[0].mean(), data[0].std()          # training statistics
    data = [t.to(device) for t in data]
    xt, yt, xv, yv = data
    xt, xv = [((x - mean) / std).view(-1, 1, 28, 28) for x in (xt, xv)]   # (n, 1, 28, 28)
    data = (xt, yt, xv, yv)
    load0 = os.getloadavg()
    info = dict(device=str(device), device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                else platform.processor() or platform.machine()), torch=torch.__version__,
                threads=torch.get_num_threads(), cpus=os.cpu_count(), python=platform.python_version(),
                git=git_commit(), loadavg_start=[round(v, 2) for v in load0], train=len(xt), test=len(xv))
    log(f"fashion bench: {info}")
    results = {}
    def save(name, r):
        "Write run `name`'s dict `r` into the JSON at `out`, keeping the other runs there."
        saved = {}
        if out.exists():                           # keep the other runs in the file (e.g. made by another process)
            try: saved = json.loads(out.read_text(encoding='utf-8')).get('runs', {})
            except (ValueError, OSError): pass
        saved[name] = r
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f'.{os.getpid()}.tmp')
        tmp.write_text(json.dumps(dict(runs=saved), indent=1) + '\n', encoding='utf-8')
        tmp.replace(out)

    for name in runs:
        epochs, aug = (a.epochs, False) if name == 'resnet' else (a.aug_epochs, True)
        log(f"run {name}: {epochs} epochs, width {a.width}, augmentation {aug}")
        t0 = time.perf_counter()
        common = {k: info[k] for k in ('device', 'device_name', 'torch', 'threads', 'git', 'loadavg_start')}
        r = train(data, epochs, a.width, a.lr, a.bs, aug, a.seed, device, log,
                  save=lambda part: save(name, dict(epochs=epochs, width=a.width, augment=aug, **part, **common)))
        r.update(wall_seconds=round(time.perf_counter() - t0, 1), loadavg_end=[round(v, 2) for v in os.getloadavg()],
                 **common, finished=time.strftime('%Y-%m-%d %H:%M:%S %Z'))
        log(f"run {name}: test accuracy {r['test_accuracy']:.4f}"
            + (f", with TTA {r['test_accuracy_tta']:.4f}" if aug else '')
            + f"; {r['train_seconds']:.0f}s training, {r['images_per_second']:,.0f} images/s")
        results[name] = r
        save(name, r)
        log(f"wrote {out}")
    return results


if __name__ == '__main__':
    main()
