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

from conftest import DiskFull, code, md, write_nb  # noqa: E402

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


# ---- the shared command line and faults ---------------------------------------------------------

def tool_project(root, *scripts):
    """A throwaway project: the tools copied into `root` with a settings.ini, notebooks in `root/nbs`."""
    import shutil

    (root / "nbs").mkdir(parents=True, exist_ok=True)
    for script in ("notebook2script.py", *scripts):
        shutil.copy(ROOT / script, root / script)
    (root / "settings.ini").write_text("[DEFAULT]\nlib_name = exp\nlib_path = exp\nnbs_path = nbs\n",
                                       encoding="utf-8")
    return root


def run_in(root, *args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=root, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("arg", ["01_dirty", "01_dirty.ipynb", "nbs/01_dirty.ipynb"])
def test_a_stem_a_file_name_or_a_path_names_the_notebook(tmp_path, arg):
    root = tool_project(tmp_path, "clean_nbs.py")
    write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    res = run_in(root, "clean_nbs.py", arg)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["cleaned: nbs/01_dirty.ipynb"]


def test_without_arguments_only_the_numbered_notebooks_are_cleaned(tmp_path):
    root = tool_project(tmp_path, "clean_nbs.py")
    write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    scratch = write_nb(root / "nbs" / "scratch.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    before = scratch.read_bytes()
    res = run_in(root, "clean_nbs.py")
    assert res.returncode == 0 and res.stdout.splitlines() == ["cleaned: nbs/01_dirty.ipynb"]
    assert scratch.read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["--check=on"], "--check is a flag and takes no value"),
    (["--chekc"], "unknown flag --chekc (did you mean --check?)"),
    (["-x"], "unknown flag -x"),
    (["--setup_git", "01_dirty"], "--setup_git takes no notebooks"),
    ([], "nbs/02-data prep.ipynb: cannot become a module"),
])
def test_bad_flags_and_names_are_one_error_line_and_nothing_is_written(tmp_path, argv, message):
    root = tool_project(tmp_path, "clean_nbs.py")
    dirty = write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    if not argv:
        write_nb(root / "nbs" / "02-data prep.ipynb", ["x = 1\n"])
    before = dirty.read_bytes()
    res = run_in(root, "clean_nbs.py", *argv)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: {message}") and len(res.stderr.splitlines()) == 1, res.stderr
    assert dirty.read_bytes() == before and not (root / ".gitattributes").exists()


def test_a_notebook_that_is_a_folder_is_one_clear_error(tmp_path):
    root = tool_project(tmp_path, "clean_nbs.py")
    write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    (root / "nbs" / "02_folder.ipynb").mkdir()
    res = run_in(root, "clean_nbs.py", "--check")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr == "error: nbs/02_folder.ipynb: cannot read it: Is a directory\n"


@pytest.mark.parametrize("fault, reason", [("full", "No space left on device"), ("read-only", "Permission denied")])
def test_a_failed_write_keeps_the_notebook_and_leaves_no_temporary_file(dirty, monkeypatch, fault, reason):
    import notebook2script as n2s

    before = dirty.read_bytes()
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return real_open(path, mode, *args, **kwargs)
        if fault == "read-only":
            raise PermissionError(13, "Permission denied", str(path))
        return DiskFull(real_open)(path, mode, *args, **kwargs)

    monkeypatch.setattr(n2s, "open", failing_open, raising=False)
    with pytest.raises(n2s.ToolError, match=f"01_dirty.ipynb: cannot write it \\({reason}\\)"):
        clean_nbs.clean_file(dirty)
    monkeypatch.undo()
    assert dirty.read_bytes() == before
    assert sorted(p.name for p in dirty.parent.iterdir()) == ["01_dirty.ipynb"]


def test_nbdev_clean_imports_and_cleans_in_a_project_with_settings_ini_and_no_tool_nbdev(tmp_path):
    root = tool_project(tmp_path, "clean_nbs.py")
    (root / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=64"]\n', encoding="utf-8")
    write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    res = run_in(root, "-c", "import nbdev.clean, clean_nbs; "
                             "print(clean_nbs.clean_file('nbs/01_dirty.ipynb'))")
    assert res.returncode == 0 and res.stdout == "False\n", res.stderr
    assert run_in(root, "clean_nbs.py", "--check").returncode == 0


def test_addresses_in_text_outputs_are_cleaned_as_nbdev_does(tmp_path):
    cell = code("object()\n", execution_count=1, outputs=[
        {"data": {"text/plain": ["<object object at 0x7f3a2c1b9e60>"]}, "execution_count": 1,
         "metadata": {}, "output_type": "execute_result"}])
    path = write_nb(tmp_path / "01_x.ipynb", [cell])
    assert clean_nbs.clean_file(path) is False
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["cells"][0]["outputs"][0]["data"]["text/plain"] == ["<object object>"]


def test_the_committed_notebooks_are_byte_identical_after_cleaning():
    for path in sorted((ROOT / "nbs").glob("*.ipynb")):
        assert clean_nbs.clean_file(path, check=True), f"{path.name} would change"


# ---- nbdev-merge as git's merge driver, on real merges --------------------------------------------

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(root, *args, check=True):
    res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=GIT_ENV, timeout=120)
    assert not check or res.returncode == 0, (args, res.stdout, res.stderr)
    return res


def edit_cell(path, index, source):
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"][index]["source"] = source
    path.write_text(clean_nbs.notebook_text(nb), encoding="utf-8")


@pytest.fixture
def repo(tmp_path):
    """A git repository with the tools, `--setup_git` run, and one committed clean notebook of 5 cells."""
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tool_project(tmp_path / "repo", "clean_nbs.py")
    nb = write_nb(root / "nbs" / "01_x.ipynb", [f"v{i} = {i}\n" for i in range(5)])
    git(root, "init", "-q", "-b", "main")
    assert run_in(root, "clean_nbs.py").returncode == 0
    res = subprocess.run([sys.executable, "clean_nbs.py", "--setup_git"], cwd=root, capture_output=True,
                         text=True, env=GIT_ENV, timeout=120)
    assert res.returncode == 0, res.stderr
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root, nb


def test_setup_git_writes_the_local_config_and_gitattributes(repo):
    root, _ = repo
    assert (root / ".gitattributes").read_text(encoding="utf-8") == "*.ipynb merge=nbdev-merge\n"
    driver = git(root, "config", "--local", "--get", "merge.nbdev-merge.driver").stdout
    assert "nbdev-merge" in driver and driver.rstrip().endswith("%O %A %B %P")
    res = subprocess.run([sys.executable, "clean_nbs.py", "--setup_git"], cwd=root, capture_output=True,
                         text=True, env=GIT_ENV, timeout=120)
    assert res.returncode == 0  # a second run changes nothing
    assert (root / ".gitattributes").read_text(encoding="utf-8") == "*.ipynb merge=nbdev-merge\n"


def test_setup_git_outside_a_repository_is_one_clear_error(tmp_path):
    root = tool_project(tmp_path, "clean_nbs.py")
    res = subprocess.run([sys.executable, "clean_nbs.py", "--setup_git"], cwd=root, capture_output=True,
                         text=True, env={**GIT_ENV, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
                         timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: git rev-parse") and "Traceback" not in res.stderr
    assert not (root / ".gitattributes").exists()


def test_edits_to_different_cells_merge_cleanly(repo):
    import nbformat

    root, nb = repo
    git(root, "checkout", "-qb", "one")
    edit_cell(nb, 0, "v0 = 'one'\n")
    git(root, "commit", "-qam", "one")
    git(root, "checkout", "-q", "main")
    git(root, "checkout", "-qb", "two")
    edit_cell(nb, 4, "v4 = 'two'\n")
    git(root, "commit", "-qam", "two")
    git(root, "merge", "-q", "one", "-m", "merge")
    merged = nbformat.read(nb, as_version=4)
    nbformat.validate(merged)
    assert [c.source for c in merged.cells] == ["v0 = 'one'\n", "v1 = 1\n", "v2 = 2\n", "v3 = 3\n",
                                                "v4 = 'two'\n"]
    assert run_in(root, "clean_nbs.py", "--check").returncode == 0


def test_a_conflict_in_one_cell_leaves_a_valid_notebook_with_the_markers(repo):
    import warnings

    import nbformat

    root, nb = repo
    git(root, "checkout", "-qb", "one")
    edit_cell(nb, 2, "v2 = 'one'\n")
    git(root, "commit", "-qam", "one")
    git(root, "checkout", "-q", "main")
    edit_cell(nb, 2, "v2 = 'main'\n")
    git(root, "commit", "-qam", "main")
    res = git(root, "merge", "one", "-m", "merge", check=False)
    assert res.returncode == 1 and "CONFLICT" in res.stdout
    text = nb.read_text(encoding="utf-8")
    json.loads(text)  # still JSON: git's own markers would have broken it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the marker cells have no ids yet; nbformat adds them
        merged = nbformat.read(nb, as_version=4)
        nbformat.validate(merged)
    sources = [c.source for c in merged.cells]
    assert sources == ["v0 = 0\n", "v1 = 1\n", "`<<<<<<< HEAD`", "v2 = 'main'\n", "`=======`",
                       "v2 = 'one'\n", "`>>>>>>> one`", "v3 = 3\n", "v4 = 4\n"]
    assert run_in(root, "clean_nbs.py").returncode == 0  # cleaning gives the marker cells ids
    nbformat.validate(nbformat.read(nb, as_version=4))


def test_without_nbdev_the_command_says_how_to_install_it_in_one_line(tmp_path):
    root = tool_project(tmp_path, "clean_nbs.py")
    write_nb(root / "nbs" / "01_dirty.ipynb", dirty_cells(), metadata=copy.deepcopy(DIRTY_META))
    (root / "nbdev").mkdir()  # a package that shadows nbdev and has no `clean` module
    (root / "nbdev" / "__init__.py").write_text("", encoding="utf-8")
    res = run_in(root, "clean_nbs.py", "--check")
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("error: cannot import nbdev.clean") and 'pip install -e ".[dev]"' in res.stderr
