#!/usr/bin/env python
"""How fast does notebook2script.py export? Synthetic projects of 3 and 100 notebooks, 10 export cells each.

    python bench/export_speed.py
    python bench/export_speed.py --nbdev /path/to/venv/bin/nbdev_export --course /path/to/course/notebook2script.py

Without `--nbdev` / `--course` it looks for them where these commands put them (outside the repo):

    python3 -m venv /tmp/nbdev2-venv && /tmp/nbdev2-venv/bin/pip install "nbdev==2.4.14" "execnb<0.2" "fastcore<2"
    mkdir -p /tmp/course-v3 && curl -o /tmp/course-v3/notebook2script.py \
        https://raw.githubusercontent.com/fastai/course-v3/master/nbs/dl2/notebook2script.py

Each tool runs as a fresh process (as a person runs it), timed by wall clock. Every round runs each
tool once in a shuffled order, and medians over `--runs` rounds are compared, so all the ratios come from
one run on one machine state. Each tool's CPU time (user + system, from the OS) is reported beside its
wall time: on a shared, loaded machine the wall times stretch with the load, the CPU times much less.
Ours is timed three ways: a first export into an empty package folder (it
parses every export cell, to report a syntax error by notebook, cell and line before writing anything),
a re-export after one cell changed (only changed cells are parsed again), and a re-export with nothing
changed. Optional contenders, which rewrite everything every time: nbdev 2's `nbdev_export` (pass the
executable; nbdev 2.4.14 needs `execnb<0.2 fastcore<2` in its own venv) and the course's
notebook2script.py (pass its path; it needs fire in `--python`'s environment).
"""
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELL = '''def synthetic_{i}_{j}(x, y=2):
    "Synthetic function {j} of notebook {i}."
    total = 0
    for k in range(x):
        total += k * y
    return total

class Synthetic{i}x{j}:
    "Synthetic class."
    def __init__(self, a): self.a = a
    def __call__(self, b): return self.a + b'''
NBDEV_SETTINGS = """[DEFAULT]
repo = bench
lib_name = bench
lib_path = bench
nbs_path = nbs
doc_path = _docs
version = 0.0.1
user = bench
author = bench
author_email = bench@example.com
copyright = bench
description = bench
keywords = bench
language = English
status = 3
min_python = 3.9
license = apache2
branch = main
black_formatting = False
readme_nb = index.ipynb
allowed_metadata_keys =
allowed_cell_metadata_keys =
jupyter_hooks = False
clean_ids = True
clear_all = False
put_version_in_init = True
custom_sidebar = False
recursive = False
"""


def notebook(i, directive, default_exp=False):
    """A notebook dict with 10 export cells, 10 markdown cells and 5 plain code cells."""
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
              "source": [f"#| default_exp nb_{i:02d}"]}] if default_exp else []
    for j in range(10):
        cells.append({"cell_type": "markdown", "metadata": {}, "source": [f"## Step {j}\n", "Some prose."]})
        src = (directive + "\n" + CELL.format(i=i, j=j)).splitlines(keepends=True)
        cells.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src})
        if j % 2:
            cells.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                          "source": [f"synthetic_{i}_{j}(3)"]})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def make_project(folder, n, directive, default_exp=False):
    """Write `n` synthetic notebooks into `folder/nbs`."""
    nbs = folder / "nbs"
    nbs.mkdir(parents=True)
    for i in range(n):
        text = json.dumps(notebook(i, directive, default_exp), indent=1)
        (nbs / f"{i:02d}_synthetic.ipynb").write_text(text, encoding="utf-8")
    return nbs


def timed_rounds(tools, runs):
    """`{name: (median wall seconds, median CPU seconds)}`: each round runs every tool once, in a
    shuffled order, after its reset."""
    times = {name: [] for name in tools}
    cpu = {name: [] for name in tools}
    order = list(tools)
    for k in range(runs + 1):  # round 0 warms the file cache and is discarded
        random.shuffle(order)
        for name in order:
            cmd, cwd, reset = tools[name]
            if reset:
                reset()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if k:
                times[name].append(wall)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {name: (statistics.median(times[name]), statistics.median(cpu[name])) for name in tools}


def ours(tmp, n, python, scenario):
    """Our script on its own synthetic project, set up for `scenario` (first, edit or no-op)."""
    folder = tmp / f"ours-{scenario}-{n}"
    nbs = make_project(folder, n, "#export")
    shutil.copy(ROOT / "notebook2script.py", folder)
    (folder / "settings.ini").write_text("[DEFAULT]\nlib_path = exp\nnbs_path = nbs\n", encoding="utf-8")
    cmd = [python, "notebook2script.py"]
    subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    if scenario == "first":
        return cmd, folder, lambda: shutil.rmtree(folder / "exp", True)
    if scenario == "no-op":
        return cmd, folder, None
    edited, versions = nbs / "00_synthetic.ipynb", [notebook(0, "#export"), notebook(0, "#export")]
    versions[1]["cells"][1]["source"].append("\n# an edit")
    runs = itertools.count()

    def edit_one_cell():  # alternate between the two versions, so every run exports a real change
        edited.write_text(json.dumps(versions[next(runs) % 2], indent=1), encoding="utf-8")
    return cmd, folder, edit_one_cell


def contenders(tmp, n, python, nbdev, course):
    """`{name: (command, cwd, reset)}` for each tool, each with its own synthetic project of `n` notebooks."""
    result = {"ours": ours(tmp, n, python, "first"),
              "ours, 1 cell edited": ours(tmp, n, python, "edit"),
              "ours, no change": ours(tmp, n, python, "no-op")}
    if course:
        nbs = make_project(tmp / f"course{n}", n, "#export")

        def reset_course():
            shutil.rmtree(nbs / "exp", True)
            (nbs / "exp").mkdir()
        result["course script"] = ([python, str(Path(course).resolve()), "--allFiles=True"], nbs, reset_course)
    if nbdev:
        folder = tmp / f"nbdev{n}"
        make_project(folder, n, "#| export", default_exp=True)
        (folder / "settings.ini").write_text(NBDEV_SETTINGS, encoding="utf-8")
        result["nbdev_export"] = ([str(Path(nbdev).resolve())], folder, lambda: shutil.rmtree(folder / "bench", True))
    return result


def in_process(n, tmp):
    """Median seconds of the export itself, without interpreter start-up (imports notebook2script)."""
    sys.path.insert(0, str(ROOT))
    import notebook2script as n2s

    folder = tmp / f"inproc{n}"
    make_project(folder, n, "#export")
    times = []
    for _ in range(5):
        shutil.rmtree(folder / "exp", True)
        start = time.perf_counter()
        n2s.export(root=folder, out=lambda line: None)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


NBDEV_DEFAULT = Path("/tmp/nbdev2-venv/bin/nbdev_export")
COURSE_DEFAULT = Path("/tmp/course-v3/notebook2script.py")


def main(runs=9, python=sys.executable, nbdev=None, course=None, out=ROOT / "bench/results/export_speed.json"):
    """Print export times for 3 and 100 notebooks and each contender's ratio to ours; save them to `out`."""
    record = {"runs": runs, "load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "seconds": {}}
    nbdev = nbdev or (NBDEV_DEFAULT if NBDEV_DEFAULT.is_file() else None)
    course = course or (COURSE_DEFAULT if COURSE_DEFAULT.is_file() else None)
    print(f"python: {python}\nnbdev_export: {nbdev}\ncourse script: {course}")
    print(f"runs: {runs} (rounds; each runs every tool once in a shuffled order; medians; a warm-up round discarded)")
    print(f"load average before: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)\n")
    print(f"{'notebooks':>9}  {'tool':<20} {'wall s':>7} {'CPU s':>7}  {'ours (first export) is x faster':>32}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in (3, 100):
            tools = contenders(tmp, n, python, nbdev, course)
            times = timed_rounds(tools, runs)
            record["seconds"][n] = {name: {"wall": wall, "cpu": cpu} for name, (wall, cpu) in times.items()}
            for name, (wall, cpu) in times.items():
                ratio = "" if name.startswith("ours") else \
                    f"{wall / times['ours'][0]:.2f}x wall, {cpu / times['ours'][1]:.2f}x CPU"
                print(f"{n:>9}  {name:<20} {wall:7.3f} {cpu:7.3f}  {ratio:>32}")
            print(f"{n:>9}  {'ours in-process':<20} {in_process(n, tmp):7.3f}          (export work alone, no start-up)")
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        print(f"{'':>9}  {'bare python':<20} {time.perf_counter() - start:7.3f}          (interpreter start-up, one run)")
    record["load_after"] = os.getloadavg()[0]
    print(f"\nload average after: {record['load_after']:.1f}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"saved {out}")


if __name__ == "__main__":
    import fire

    fire.Fire(main)
