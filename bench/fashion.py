#!/usr/bin/env python
"""Full Fashion-MNIST runs of `08_resnet`'s ResNet, longer than a notebook holds (run by hand).

    python bench/fashion.py                          # both runs, on def_device
    python bench/fashion.py --runs resnet --epochs 5 --device cpu --threads 2
    python bench/fashion.py --runs augment --aug_epochs 20 --width 0.5

Two runs, each seeded, one-cycle AdamW (peak lr 1e-2), batches of 1024, on all 60,000 training
images, scored on the 10,000 test images:
- `resnet`: the ResNet for `--epochs` (5); target >= 93.0% (course22p2 `13_resnet`: 92.8% in 5).
- `augment`: random crop (pad 1, filled with each image's background) and horizontal flip for
  `--aug_epochs` (20), scored plain and with test-time augmentation; target >= 94.5% (course22p2
  `14_augment`: 94.3%, 94.5% with TTA).
Prints each epoch, images per second and each run's time. Writes (after every epoch, so a run cut
short leaves its progress) `bench/results/fashion_<device>.json`: device, torch version, threads,
load average, git commit, and per run the accuracies, losses and times.

The loop is a plain one (index, augment, forward, backward, step) around the library's model,
augmentation and TTA, so the numbers measure those and the hardware, not the callbacks.
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

from exp import nb_08                           # noqa: E402

WIDTHS = (16, 32, 64, 128, 256, 512)            # course22p2 `14_augment`'s ResNet


def evaluate(model, x, y, bs=2048, tta=False):
    "Accuracy and mean loss of `model` on `x`, `y`; with `tta`, also of flip-averaged predictions."
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


def train(data, epochs, width, lr, bs, aug, seed, device, log, save=None, stem_ks=3):
    "Train a fresh ResNet; return what happened (and pass the progress to `save` after each epoch)."
    torch.manual_seed(seed)
    xt, yt, xv, yv = data
    nfs = tuple(max(1, round(w * width)) for w in WIDTHS)
    model = nb_08.resnet(nfs, stem_ks=stem_ks)         # stored channels-last: faster convolutions
    model = model.to(device, memory_format=torch.channels_last)
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
        tta = f"  tta {ev['accuracy_tta']:.4f}" if 'accuracy_tta' in ev else ''
        log(f"  epoch {epoch + 1:>3}/{epochs}  train_loss {tot / n:.4f}  test_loss {ev['loss']:.4f}"
            f"  test_acc {ev['accuracy']:.4f}{tta}  {secs:.1f}s  {n / secs:,.0f} img/s")
        speed = round((epoch + 1) * n / t_train, 1)
        if save: save(dict(epochs_done=epoch + 1, complete=False, train_seconds=round(t_train, 1),
                           images_per_second=speed, history=hist))
    res = dict(epochs=epochs, width=width, nfs=list(nfs), stem_ks=stem_ks, lr=lr, bs=bs, augment=aug,
               seed=seed, channels_last=True,
               params=sum(p.numel() for p in model.parameters()),
               mmacs=round(nb_08.summary(model, xv[:1]).mmacs, 3),
               train_seconds=round(t_train, 1), images_per_second=round(epochs * n / t_train, 1),
               test_accuracy=hist[-1]['accuracy'], epochs_done=epochs, complete=True, history=hist)
    if aug:
        res['test_accuracy_tta'] = hist[-1]['accuracy_tta']
        res['crop_fill'] = 'image minimum (the background)'    # before 2026-12-04: 0 (mean grey)
    return res


def git_commit():
    "The commit this script runs from (with `+dirty` if tracked files changed), or None."
    def git(*args):
        res = subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True)
        return res.stdout.strip()
    try: c, dirty = git('rev-parse', '--short', 'HEAD'), git('status', '--porcelain', '-uno')
    except OSError: return None
    return (c + ('+dirty' if dirty else '')) if c else None


def save_run(out, name, r):
    "Write run `name`'s dict `r` into the JSON at `out`, keeping the other runs already there."
    saved = {}
    if out.exists():                            # e.g. the other run, made by another invocation
        try: saved = json.loads(out.read_text(encoding='utf-8')).get('runs', {})
        except (ValueError, OSError): pass
    saved[name] = r
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f'.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(dict(runs=saved), indent=1) + '\n', encoding='utf-8')
    tmp.replace(out)                            # atomic: a reader never sees half a file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--runs', default='resnet,augment', help='comma-separated: resnet, augment')
    p.add_argument('--epochs', type=int, default=5, help='epochs of the plain ResNet run')
    p.add_argument('--aug_epochs', type=int, default=20, help='epochs of the augmentation run')
    p.add_argument('--width', type=float, default=1.0, help='multiplies 16, 32, ..., 512')
    p.add_argument('--stem_ks', type=int, default=3, help="the first block's kernel size")
    p.add_argument('--lr', type=float, default=1e-2, help='one-cycle peak learning rate')
    p.add_argument('--bs', type=int, default=1024)
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--device', default=None, help='default: def_device (CUDA, then MPS, then CPU)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch)')
    p.add_argument('--limit', type=int, default=None, help='first N train and test images only')
    p.add_argument('--out', default=None, help='default: bench/results/fashion_<device>.json')
    p.add_argument('--note', default=None, help='a remark stored with the results (e.g. the load)')
    a = p.parse_args(argv)
    a.runs = [r.strip() for r in a.runs.split(',') if r.strip()]
    bad = [r for r in a.runs if r not in ('resnet', 'augment')]
    if bad: p.error(f"unknown run(s) {bad}; choose from resnet, augment")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device or nb_08.def_device)
    out = Path(a.out) if a.out else ROOT / 'bench' / 'results' / f'fashion_{device.type}.json'

    def log(s): print(s, flush=True)
    data = nb_08.get_fashion_mnist()
    if a.limit: data = [t[:a.limit] for t in data]
    mean, std = data[0].mean(), data[0].std()   # training statistics
    xt, yt, xv, yv = [t.to(device) for t in data]
    xt, xv = [((x - mean) / std).view(-1, 1, 28, 28) for x in (xt, xv)]     # (n, 1, 28, 28)
    name_of = torch.cuda.get_device_name if device.type == 'cuda' else lambda d: platform.machine()
    info = dict(device=str(device), device_name=name_of(device), torch=torch.__version__,
                threads=torch.get_num_threads(), cpus=os.cpu_count(), git=git_commit(),
                loadavg_start=[round(v, 2) for v in os.getloadavg()])
    if a.note: info['note'] = a.note
    log(f"fashion bench: {info}, {len(xt):,} train / {len(xv):,} test images")
    results = {}
    for name in a.runs:
        epochs, aug = (a.epochs, False) if name == 'resnet' else (a.aug_epochs, True)
        log(f"run {name}: {epochs} epochs, width {a.width}, augmentation {aug}")
        t0 = time.perf_counter()
        head = dict(epochs=epochs, width=a.width, augment=aug, **info)
        r = train((xt, yt, xv, yv), epochs, a.width, a.lr, a.bs, aug, a.seed, device, log,
                  save=lambda part: save_run(out, name, {**head, **part}), stem_ks=a.stem_ks)
        r.update(info, wall_seconds=round(time.perf_counter() - t0, 1),
                 loadavg_end=[round(v, 2) for v in os.getloadavg()],
                 finished=time.strftime('%Y-%m-%d %H:%M:%S %Z'))
        tta = f", with TTA {r['test_accuracy_tta']:.4f}" if aug else ''
        log(f"run {name}: test accuracy {r['test_accuracy']:.4f}{tta}; {r['train_seconds']:.0f}s "
            f"training, {r['images_per_second']:,.0f} images/s")
        results[name] = r
        save_run(out, name, r)
        log(f"wrote {out}")
    return results


if __name__ == '__main__':
    main()
