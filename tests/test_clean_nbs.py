"""clean_nbs.py: strip execution counts and volatile metadata, keep outputs; `--check`; bad input."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import clean_nbs  # noqa: E402

from conftest import code, md, write_nb  # noqa: E402

pytestmark = pytest.mark.toolchain

CLEAN_META = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
              "language_info": {"name": "python"}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n"


def dirty_cells():
    """Cells as Jupyter leaves them after a run: counts, timings, UI state, and real outputs."""
    return [
        {**md("# Title é"), "metadata": {"editable": False, "tags": ["intro"]}},
        code("print('hi')\n1 + 1\n", execution_count=3,
             metadata={"collapsed": True, "scrolled": True, "tags": ["keep-me"],
                       "execution": {"iopub.status.busy": "2026-01-01T00:00:00.000Z"},
                       "ExecuteTime": {"end_time": "2026-01-01T00:00:01.000Z"}},
             outputs=[{"name": "stdout", "output_type": "stream", "text": ["hi\n"]},
                      {"data": {"text/plain": ["2"]}, "execution_count": 3, "metadata": {},
                       "output_type": "execute_result"}]),
        code("plot()\n", execution_count=4, metadata={"jupyter": {"outputs_hidden": False}},
             outputs=[{"data": {"image/png": PNG, "text/plain": ["<Figure size 600x400>"]},
                       "metadata": {"needs_background": "light"}, "output_type": "display_data"}]),
        code("not_run = 1\n"),
    ]


DIRTY_META = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3",
                             "env": {"SECRET_PATH": "/home/someone"}},
              "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "name": "python",
                                "version": "3.11.7", "file_extension": ".py"},
              "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
              "toc": {"nav_menu": {}}}


@pytest.fixture
def dirty(tmp_path):
    return write_nb(tmp_path / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))


def clean_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "clean_nbs.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def without_counts(outputs):
    return [{k: v for k, v in o.items() if k != "execution_count"} for o in outputs]


def test_cleaning_strips_counts_and_volatile_metadata_and_keeps_outputs(dirty):
    res = clean_cli(dirty)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"cleaned: {dirty}"]
    nb = json.loads(dirty.read_text(encoding="utf-8"))
    before = dirty_cells()
    for i, (cell, old) in enumerate(zip(nb["cells"], before), 1):
        assert "".join(cell["source"]) == old["source"] and cell["id"] == f"cell-{i}"
        if cell["cell_type"] == "code":
            assert cell["execution_count"] is None
            assert all(o.get("execution_count") is None for o in cell["outputs"])
            if i != 3:
                assert without_counts(cell["outputs"]) == without_counts(old["outputs"])  # outputs kept
    assert [c["metadata"] for c in nb["cells"]] == [{"tags": ["intro"]}, {"tags": ["keep-me"]}, {}, {}]
    image = nb["cells"][2]["outputs"][0]  # as nbdev cleans it: no output metadata, no trailing newline
    assert image["data"]["image/png"] == PNG.rstrip() and image["metadata"] == {}


def test_notebook_metadata_is_reduced_to_kernelspec_and_language_name(dirty):
    clean_cli(dirty)
    meta = json.loads(dirty.read_text(encoding="utf-8"))["metadata"]
    assert meta == {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                   "name": "python3"},
                    "language_info": {"name": "python"}}


def test_missing_metadata_gets_the_default_kernel(tmp_path):
    path = write_nb(tmp_path / "02_bare.ipynb", ["x = 1\n"])
    clean_cli(path)
    assert json.loads(path.read_text(encoding="utf-8"))["metadata"] == CLEAN_META


def test_the_file_is_written_as_jupyter_writes_it(dirty):
    clean_cli(dirty)
    text = dirty.read_bytes().decode("utf-8")
    assert text.endswith("}\n") and "\r" not in text
    assert text.startswith('{\n "cells": [\n')  # one-space indent, sorted keys
    assert "# Title é" in text  # non-ASCII kept as is, not \u escapes
    nb = json.loads(text)
    assert text == json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_cleaning_is_idempotent(dirty):
    clean_cli(dirty)
    once = dirty.read_bytes()
    os.utime(dirty, (1_000_000_000, 1_000_000_000))
    res = clean_cli(dirty)
    assert res.returncode == 0 and res.stdout == ""  # nothing to clean, nothing said
    assert dirty.read_bytes() == once
    assert dirty.stat().st_mtime == 1_000_000_000  # and not rewritten


def test_clean_notebook_in_process_is_idempotent():
    nb = {"cells": [{**c, "id": f"c{i}"} for i, c in enumerate(dirty_cells())], "metadata": copy.deepcopy(DIRTY_META), "nbformat": 4, "nbformat_minor": 5}
    once = clean_nbs.notebook_text(clean_nbs.clean_notebook(copy.deepcopy(nb)))
    twice = clean_nbs.notebook_text(clean_nbs.clean_notebook(json.loads(once)))
    assert once == twice
    assert '"execution_count": 3' not in once and "ExecuteTime" not in once and "widgets" not in once


def test_check_fails_on_an_unclean_notebook_and_writes_nothing(dirty):
    before = dirty.read_bytes()
    res = clean_cli(dirty, "--check")
    assert res.returncode == 1
    assert f"unclean: {dirty}" in res.stdout and "1 of 1 notebook(s) unclean" in res.stdout
    assert dirty.read_bytes() == before


def test_check_passes_on_a_clean_notebook(dirty):
    assert clean_cli(dirty).returncode == 0
    res = clean_cli(dirty, "--check")
    assert res.returncode == 0, res.stdout
    assert res.stdout.splitlines() == ["1 notebook(s) clean"]


def test_check_names_only_the_unclean_ones(dirty, tmp_path):
    clean = write_nb(tmp_path / "02_clean.ipynb", [md("# ok"), "x = 1\n"], metadata=CLEAN_META)
    clean.write_text(clean_nbs.notebook_text(json.loads(clean.read_text(encoding="utf-8"))), encoding="utf-8")
    res = clean_cli(clean, dirty, "--check")
    assert res.returncode == 1
    assert "unclean" in res.stdout and str(dirty) in res.stdout and str(clean) not in res.stdout
    assert "1 of 2 notebook(s) unclean" in res.stdout


def test_check_fails_on_a_stray_execution_count(dirty):
    clean_cli(dirty)
    nb = json.loads(dirty.read_text(encoding="utf-8"))
    nb["cells"][1]["execution_count"] = 1
    dirty.write_text(clean_nbs.notebook_text(nb), encoding="utf-8")
    assert clean_cli(dirty, "--check").returncode == 1


@pytest.mark.parametrize("content, message", [
    (b'{"cells": [\n  {"cell_type": "code",,}\n]}', "invalid JSON at line 2, column 24"),
    (b"[1, 2]", "valid JSON but not a Jupyter notebook"),
    (b'{"cells": [], "nbformat": 4, "x": "\xff"}', "not UTF-8"),
    (None, "no notebook named"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "03_bad.ipynb"
    if content is not None:
        path.write_bytes(content)
    for args in [(path,), (path, "--check")]:
        res = clean_cli(*args)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert res.stderr.startswith(f"error: {path}: {message}" if content else
                                     f"error: {message} {str(path)!r}"), res.stderr
    assert (path.read_bytes() if content is not None else None) == content


def test_a_bad_notebook_does_not_stop_the_others(tmp_path, dirty):
    bad = tmp_path / "00_bad.ipynb"
    bad.write_bytes(b"{")
    res = clean_cli(bad, dirty)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: {bad}" in res.stderr and f"cleaned: {dirty}" in res.stdout
    assert json.loads(dirty.read_text(encoding="utf-8"))["metadata"]["language_info"] == {"name": "python"}


def test_check_before_the_path_checks_that_path(dirty):
    res = clean_cli("--check", dirty)
    assert res.returncode == 1 and f"unclean: {dirty}" in res.stdout
