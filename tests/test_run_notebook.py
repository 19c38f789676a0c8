"""run_notebook.py on small notebooks in tmp folders: a pass, a failure, a cell timeout, --save.

Each kernel start costs about a second, so the runs are shared: four kernels in all.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import clean_nbs  # noqa: E402
import run_notebook  # noqa: E402

from conftest import code, md, write_nb  # noqa: E402

pytestmark = pytest.mark.toolchain

RUNNER = ROOT / "run_notebook.py"
FAILING_CELL = ("shape = (3, 4)\n"
                "print('about to fail')\n"
                "if shape[0] != 4:\n"
                "    raise ValueError(f'bad shape {shape}')\n"
                "fifth_line = 'not shown'\n"
                "sixth_line = 'not shown either'\n")


def runner(*args, cwd):
    return subprocess.run([sys.executable, str(RUNNER), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """One run of the command with `--timeout 2 --save` on a passing, a failing and a slow notebook."""
    folder = tmp_path_factory.mktemp("nbs")
    ok = write_nb(folder / "01_ok.ipynb", [md("# Fine"), "x = 1 + 1\nprint(x)\n", "x * 3\n"])
    bad = write_nb(folder / "02_bad.ipynb", [md("# Broken"), "y = 2\n", FAILING_CELL, "print('never')\n"])
    slow = write_nb(folder / "03_slow.ipynb", ["x = 1\n", "import time\ntime.sleep(20)\n", "y = 2\n"])
    before = {p: p.read_bytes() for p in (ok, bad, slow)}
    res = runner(ok, bad, slow, "--timeout", 2, "--save", cwd=tmp_path_factory.mktemp("cwd"))
    return res, ok, bad, slow, before


def test_exit_code_is_1_when_a_notebook_fails(three):
    res, *_ = three
    assert res.returncode == 1, (res.stdout, res.stderr)


def test_each_notebook_gets_an_ok_or_failed_line_with_its_time(three):
    res, ok, bad, slow, _ = three
    lines = res.stdout.splitlines()
    assert len(lines) == 4, lines
    assert re.fullmatch(rf"ok +\d+\.\d s  {re.escape(str(ok))}  \(saved\)", lines[0]), lines
    assert re.fullmatch(rf"FAILED +\d+\.\d s  {re.escape(str(bad))}", lines[1]), lines
    assert re.fullmatch(rf"FAILED +\d+\.\d s  {re.escape(str(slow))}", lines[2]), lines


def test_the_summary_counts_and_names_the_failures(three):
    res, ok, bad, slow, _ = three
    assert re.fullmatch(rf"1 of 3 notebook\(s\) ran cleanly in \d+\.\d s; failed: {re.escape(str(bad))}, "
                        rf"{re.escape(str(slow))}", res.stdout.splitlines()[-1])


def test_a_failure_names_notebook_cell_first_lines_and_error(three):
    res, ok, bad, slow, _ = three
    err = res.stderr
    assert f"{bad}, cell 3 failed:" in err  # cells counted from 1, markdown included
    for line in FAILING_CELL.splitlines()[:4]:
        assert "    " + line in err
    assert "    ..." in err and "fifth_line" not in err  # only the first lines
    assert "ValueError: bad shape (3, 4)" in err
    assert "Traceback" not in err and "01_ok" not in err


def test_a_cell_longer_than_the_timeout_fails_with_a_timeout_message(three):
    res, ok, bad, slow, _ = three
    err = res.stderr
    assert f"{slow}, cell 2 failed:\n    import time\n    time.sleep(20)\n" in err
    assert "TimeoutError: the cell ran longer than 2 s" in err


def test_failing_notebooks_are_untouched_even_with_save(three):
    res, ok, bad, slow, before = three
    assert bad.read_bytes() == before[bad] and slow.read_bytes() == before[slow]
    saved = json.loads(ok.read_text(encoding="utf-8"))
    assert ok.read_bytes() != before[ok] and "".join(saved["cells"][1]["outputs"][0]["text"]) == "2\n"


def test_save_writes_clean_outputs_and_runs_in_the_notebook_folder(tmp_path):
    folder, elsewhere = tmp_path / "nbs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    dirty = {"collapsed": True, "tags": ["keep"], "execution": {"iopub.status.idle": "2020"}}
    path = write_nb(folder / "03_save.ipynb", [
        md("# Saved"),
        code("open('made_here.txt', 'w').write('written by cell 2')\n", execution_count=7, metadata=dirty),
        "import os\nprint(open('made_here.txt').read())\nprint(os.getcwd())\n",
        "1 + 1\n",
    ], metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {"state": {}}})
    res = runner(path, "--save", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.fullmatch(rf"ok +\d+\.\d s  {re.escape(str(path))}  \(saved\)", lines[0]), lines
    assert re.fullmatch(r"1 of 1 notebook\(s\) ran cleanly in \d+\.\d s", lines[-1]), lines

    # the working directory was the notebook's folder
    assert (folder / "made_here.txt").read_text() == "written by cell 2"
    assert not (elsewhere / "made_here.txt").exists()
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert "".join(cells[2]["outputs"][0]["text"]) == f"written by cell 2\n{folder.resolve()}\n"

    # outputs kept, volatile metadata gone
    result = cells[3]["outputs"][0]
    assert result["output_type"] == "execute_result" and "".join(result["data"]["text/plain"]) == "2"
    assert result["execution_count"] is None
    for c in cells:
        if c["cell_type"] == "code":
            assert c["execution_count"] is None and c["outputs"]
    assert cells[1]["metadata"] == {"tags": ["keep"]}
    assert all(c["metadata"] == {} for i, c in enumerate(cells) if i != 1)  # no timing metadata
    assert nb["metadata"] == {"kernelspec": {"display_name": "Python 3", "language": "python",
                                             "name": "python3"}, "language_info": {"name": "python"}}
    assert clean_nbs.clean_file(path, check=True)  # it passes the cleanliness check
    assert sorted(p.name for p in folder.iterdir()) == ["03_save.ipynb", "made_here.txt"]  # no temp file


def test_a_missing_notebook_is_a_clear_error(tmp_path):
    res = runner(tmp_path / "99_missing.ipynb", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: no notebook named") and "99_missing" in res.stderr


def test_an_unreadable_notebook_fails_without_a_traceback(tmp_path):
    path = tmp_path / "05_broken.ipynb"
    path.write_bytes(b'{"cells": [')
    res = runner(path, cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"{path}: cannot read the notebook" in res.stderr
    assert path.read_bytes() == b'{"cells": ['


def test_run_in_process_raises_notebook_failed_on_an_unreadable_notebook(tmp_path):
    path = tmp_path / "06_broken.ipynb"
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(run_notebook.NotebookFailed, match="nbs/06_broken.ipynb: cannot read the notebook"):
        run_notebook.run(path, save=True, shown="nbs/06_broken.ipynb")
    assert path.read_text(encoding="utf-8") == "not json"


# ---- the shared command line and faults ---------------------------------------------------------

def tool_project(root):
    """The tools copied into `root` with a settings.ini; notebooks go in `root/nbs`."""
    import shutil

    (root / "nbs").mkdir(parents=True, exist_ok=True)
    for script in ("notebook2script.py", "clean_nbs.py", "run_notebook.py"):
        shutil.copy(ROOT / script, root / script)
    (root / "settings.ini").write_text("[DEFAULT]\nlib_path = exp\nnbs_path = nbs\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("argv, message", [
    (["--timeout=-1"], "--timeout takes a positive number of seconds, not -1"),
    (["--timeout", "-1"], "--timeout takes a positive number of seconds, not -1"),
    (["-t", "0"], "--timeout takes a positive number of seconds, not 0"),
    (["--timeout=nan"], "--timeout takes a positive number of seconds, not nan"),
    (["--timeout=abc"], "--timeout takes a number, not 'abc'"),
    (["--timeout"], "--timeout needs a value"),
    (["--save=on"], "--save is a flag and takes no value"),
    (["--sav"], "unknown flag --sav (did you mean --save?)"),
    (["02_folder"], "02_folder: is a folder, not a notebook file"),
    (["03-data prep"], "nbs/03-data prep.ipynb: cannot become a module"),
])
def test_bad_flags_values_and_names_are_one_error_line_before_any_kernel_starts(tmp_path, argv, message):
    root = tool_project(tmp_path)
    write_nb(root / "nbs" / "01_ok.ipynb", ["x = 1\n"])
    (root / "nbs" / "02_folder.ipynb").mkdir()
    write_nb(root / "nbs" / "03-data prep.ipynb", ["x = 1\n"])
    res = subprocess.run([sys.executable, "run_notebook.py", *argv], cwd=root, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stdout == ""
    assert res.stderr.startswith(f"error: {message}") and len(res.stderr.splitlines()) == 1, res.stderr
    assert "_1" not in res.stderr


def test_a_stem_names_the_notebook(tmp_path):
    root = tool_project(tmp_path)
    write_nb(root / "nbs" / "01_ok.ipynb", ["x = 1\n"])
    res = subprocess.run([sys.executable, "run_notebook.py", "01_ok"], cwd=root, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(r"ok +[\d.]+ s  nbs/01_ok\.ipynb", res.stdout.splitlines()[0])


def test_save_on_a_full_disk_keeps_the_notebook_and_says_so_in_one_line(tmp_path, monkeypatch):
    import notebook2script as n2s

    path = write_nb(tmp_path / "01_ok.ipynb", ["x = 1\n", "print(x)\n"])
    before = path.read_bytes()
    real_open = open

    def full(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode:
            def write(data):
                raise OSError(28, "No space left on device")
            f.write = write
        return f

    monkeypatch.setattr(n2s, "open", full, raising=False)
    with pytest.raises(n2s.ToolError, match=r"01_ok.ipynb: cannot write it \(No space left on device\)"):
        run_notebook.run(path, save=True, timeout=60)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_ok.ipynb"]


@pytest.mark.parametrize("cells", [["import os\nopen('pid', 'w').write(str(os.getpid()))\n"],
                                   ["import os\nopen('pid', 'w').write(str(os.getpid()))\n",
                                    "raise ValueError('boom')\n"]], ids=["passes", "fails"])
def test_in_process_run_shuts_its_kernel_down(tmp_path, cells):
    "`run()` in a long-lived process (pytest runs every notebook so) leaves no kernel behind."
    import os
    import time
    nb = write_nb(tmp_path / "01_pid.ipynb", cells)
    try: run_notebook.run(nb)
    except run_notebook.NotebookFailed: pass
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):                        # the shutdown request may take a moment
        try: os.kill(pid, 0)
        except ProcessLookupError: return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail(f"the kernel (pid {pid}) is still running after run() returned")
