"""Shared fixtures for the toolchain tests: throwaway projects built in `tmp_path`.

`make_nb(path, cells)` writes raw notebook JSON (so a test can also write malformed notebooks), and
`project` is a fresh copy of `notebook2script.py` with empty `nbs/`, driven in-process or as a CLI.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import notebook2script as n2s  # noqa: E402  (needs ROOT on sys.path)


def code(source, **extra):
    """A code-cell dict; `source` is kept as given (a string or a list of lines)."""
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source, **extra}


def md(source):
    """A markdown-cell dict."""
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def write_nb(path, cells, metadata=None):
    """Write a version-4 notebook holding `cells` (strs become code cells) as raw JSON; return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [code(c) if isinstance(c, (str, list)) else c for c in cells]
    cells = [{"id": f"cell-{i}", **c} for i, c in enumerate(cells, 1)]  # nbformat 4.5 cells have ids
    nb = {"cells": cells,
          "metadata": metadata if metadata is not None else {},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


class DiskFull:
    """A stand-in for `open(path, 'wb')` whose file writes half its data, then fails."""

    def __init__(self, real_open):
        self.real_open = real_open

    def __call__(self, path, mode="r", *args, **kwargs):
        f = self.real_open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        real_write = f.write

        def write(data):
            real_write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        f.write = write
        return f


@pytest.fixture
def cell():
    """`cell.code(source)` and `cell.md(source)` build cell dicts for `make_nb`."""
    return SimpleNamespace(code=code, md=md)


@pytest.fixture
def make_nb():
    """`make_nb(path, cells)`: write a notebook of raw JSON (strs in `cells` become code cells)."""
    return write_nb


class Project:
    """A throwaway project: `notebook2script.py` copied into `root`, notebooks in `root/nbs`."""

    def __init__(self, root):
        self.root = Path(root)
        self.nbs = self.root / "nbs"
        self.exp = self.root / "exp"
        self.script = self.root / "notebook2script.py"
        self.nbs.mkdir(parents=True)
        shutil.copy(ROOT / "notebook2script.py", self.script)

    def nb(self, name, cells):
        """Write `nbs/<name>.ipynb` holding `cells`."""
        return write_nb(self.nbs / f"{name}.ipynb", cells)

    def export(self, *notebooks, **kwargs):
        """Run `n2s.export` in-process on this project; return `(exit code, output lines, warnings)`."""
        lines, warnings = [], []
        rc = n2s.export(*notebooks, root=self.root, out=lines.append, warn=warnings.append, **kwargs)
        return rc, lines, warnings

    def cli(self, *args):
        """Run the copied script as a command in `root`; return the CompletedProcess."""
        return subprocess.run([sys.executable, str(self.script), *map(str, args)], cwd=self.root,
                              capture_output=True, text=True, encoding="utf-8", timeout=60)

    def module(self, name):
        """The path of `exp/<name>.py`."""
        return self.exp / f"{name}.py"

    def snapshot(self):
        """`{relative path: bytes}` of every file under the project (to prove nothing was written)."""
        return {p.relative_to(self.root).as_posix(): p.read_bytes()
                for p in sorted(self.root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh project in `tmp_path` (cwd too, so relative notebook arguments resolve in it)."""
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny tensors run faster so, and a busy machine's
    oversubscription cannot slow them (use with `pytest.mark.usefixtures("one_thread")`)."""
    import torch  # here, so that the toolchain tests never pay for importing torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def watchdog(request):
    """A hard limit: a test that hangs dumps its stack and ends pytest instead of blocking CI
    (`WATCHDOG_S` in the test module sets the seconds; use with `pytest.mark.usefixtures`)."""
    import faulthandler
    faulthandler.dump_traceback_later(getattr(request.module, "WATCHDOG_S", 120), exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A fresh, empty per-user data folder (`FOUNDATIONS_DATA`): caches and models start absent."""
    monkeypatch.setenv('FOUNDATIONS_DATA', str(tmp_path))
    return tmp_path
