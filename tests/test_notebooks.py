"""Every notebook in nbs/ runs top to bottom in a real kernel; their test cells are tests too."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import clean_nbs  # noqa: E402
import notebook2script  # noqa: E402
import run_notebook  # noqa: E402

NOTEBOOKS = notebook2script.find_notebooks(ROOT / "nbs")


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_exports.ipynb"]


@pytest.fixture(scope="session")
def data_folder(tmp_path_factory):
    """One throwaway data cache for every notebook run: the tests never write to the real cache."""
    return tmp_path_factory.mktemp("foundations-data")


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, data_folder, monkeypatch):
    monkeypatch.setenv("FOUNDATIONS_DATA", str(data_folder))  # the kernel inherits the environment
    try:
        run_notebook.run(path, timeout=600, shown=f"nbs/{path.name}")
    except run_notebook.NotebookFailed as e:
        pytest.fail(str(e), pytrace=False)


def test_exp_matches_notebooks():
    report = []
    assert notebook2script.export(check_only=True, root=ROOT, out=report.append) == 0, "\n".join(report)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    assert clean_nbs.clean_file(path, check=True), f"{path.name} is not clean: run `python clean_nbs.py`"
