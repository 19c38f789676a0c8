"""notebook2script.py: every rule of issue 2, in throwaway projects (in-process and as a command)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import notebook2script as n2s  # noqa: E402

from conftest import DiskFull, Project, code, md  # noqa: E402

pytestmark = pytest.mark.toolchain


def body_lines(text):
    """The module's lines after the header and checksum lines."""
    return text.split("\n")[2:]


def assert_clean_error(res, *names):
    """Exit 2 with one readable `error: ...` message naming `names`, and no traceback."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: "), res.stderr
    for name in names:
        assert name in res.stderr, (name, res.stderr)


# ---- export directives -------------------------------------------------------------------------

@pytest.mark.parametrize("directive", ["#export", "# export", "#exports", "#| export", "#|export",
                                       "#EXPORT", "# Exports", "#  export  ", "# | export"])
def test_each_directive_spelling_exports(project, directive):
    project.nb("01_x", [f"{directive}\nx = 1\n"])
    rc, lines, warnings = project.export()
    assert rc == 0 and warnings == []
    text = project.module("nb_01").read_text(encoding="utf-8")
    assert "x = 1" in body_lines(text)
    assert directive.strip() not in [line.strip() for line in text.split("\n")]


@pytest.mark.parametrize("source", [
    "# a plain comment\nx = 1\n",
    "x = 1  # export\n",
    "print('#export')\n",
    "\n#export\nx = 1\n",  # the directive must be the first line
    "#exp\nx = 1\n",  # too short to be a near miss
    "",
])
def test_non_directives_are_not_exported_silently(project, source):
    project.nb("01_x", [source])
    rc, lines, warnings = project.export()
    assert rc == 0 and warnings == []
    assert not project.module("nb_01").exists()
    assert lines == ["nbs/01_x.ipynb: no export cells, no module written"]


@pytest.mark.parametrize("first", ["# export this", "#expotr", "#exprot", "# exported above",
                                   "#exporting", "#| export foo", "## Export"])
def test_near_miss_warns_naming_notebook_and_cell_and_is_not_exported(project, cell, first):
    project.nb("01_x", [cell.md("# Title"), f"{first}\ny = 2\n", "#export\nx = 1\n"])
    rc, lines, warnings = project.export()
    assert rc == 0
    assert len(warnings) == 1
    assert "nbs/01_x.ipynb, cell 2" in warnings[0] and repr(first.strip()) in warnings[0]
    text = project.module("nb_01").read_text(encoding="utf-8")
    assert "x = 1" in text and "y = 2" not in text and "cell 2" not in text


def test_near_miss_warning_goes_to_stderr_of_the_command(project):
    project.nb("01_x", ["# export this\ny = 2\n"])
    res = project.cli()
    assert res.returncode == 0
    assert "warning: nbs/01_x.ipynb, cell 1" in res.stderr and "Traceback" not in res.stderr
    assert "no export cells" in res.stdout


def test_markdown_and_raw_cells_are_ignored(project, cell):
    raw = {"cell_type": "raw", "metadata": {}, "source": "#export\nraw = 1\n"}
    project.nb("01_x", [cell.md("#export\nmd = 1\n"), cell.md("# Exports\nA heading, not a typo."),
                        raw, "#export\nx = 1\n"])
    rc, lines, warnings = project.export()
    assert rc == 0 and warnings == []
    text = project.module("nb_01").read_text(encoding="utf-8")
    assert "x = 1" in text and "md = 1" not in text and "raw = 1" not in text
    assert lines == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]


def test_source_as_list_or_single_string_exports_the_same_bytes(project):
    project.nb("01_x", [["#export\n", "def f(x):\n", "    return x\n"]])
    project.export()
    first = project.module("nb_01").read_bytes()
    assert b"def f(x):\n    return x\n" in first
    project.nb("01_x", ["#export\ndef f(x):\n    return x\n"])
    rc, lines, _ = project.export()
    assert lines == ["nbs/01_x.ipynb -> exp/nb_01.py unchanged"]
    assert project.module("nb_01").read_bytes() == first


# ---- naming --------------------------------------------------------------------------------------

@pytest.mark.parametrize("file, name", [("01_matmul.ipynb", "nb_01"), ("02a_why_sqrt5.ipynb", "nb_02a"),
                                        ("10_a_b_c.ipynb", "nb_10"), ("07.ipynb", "nb_07")])
def test_module_name_is_nb_plus_the_prefix(file, name):
    assert n2s.module_name(file) == name


def test_02a_notebook_writes_nb_02a(project):
    project.nb("02a_why_sqrt5", ["#export\nx = 1\n"])
    rc, lines, _ = project.export()
    assert lines == ["nbs/02a_why_sqrt5.ipynb -> exp/nb_02a.py (1 cell)"]
    assert project.module("nb_02a").exists()


@pytest.mark.parametrize("args", [(), ("01_a",)])
def test_two_notebooks_with_one_prefix_are_refused_naming_both(project, args):
    project.nb("00_ok", ["#export\nok = 1\n"])
    project.nb("01_a", ["#export\na = 1\n"])
    project.nb("01_b", ["#export\nb = 1\n"])
    before = project.snapshot()
    res = project.cli(*args)
    assert_clean_error(res, "nbs/01_a.ipynb", "nbs/01_b.ipynb", "exp/nb_01.py")
    assert project.snapshot() == before and not project.exp.exists()


def test_a_notebook_without_export_cells_writes_no_module_and_says_so(project, cell):
    project.nb("00_ok", ["#export\nok = 1\n"])
    project.nb("01_story", [cell.md("Only prose"), "x = 1\n"])
    res = project.cli()
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["nbs/00_ok.ipynb -> exp/nb_00.py (1 cell)",
                                       "nbs/01_story.ipynb: no export cells, no module written"]
    assert not project.module("nb_01").exists()


def test_notebooks_are_exported_in_prefix_order(project):
    for name in ["10_late", "02a_aside", "02_two", "9_nine", "00_zero", "03_three"]:
        project.nb(name, ["#export\nx = 1\n"])
    rc, lines, _ = project.export()
    assert [line.split(" ")[0] for line in lines] == [
        "nbs/00_zero.ipynb", "nbs/02_two.ipynb", "nbs/02a_aside.ipynb", "nbs/03_three.ipynb",
        "nbs/9_nine.ipynb", "nbs/10_late.ipynb"]


def test_unnumbered_notebooks_and_checkpoints_are_not_exported(project, make_nb):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.nb("scratch", ["#export\nscratch = 1\n"])
    make_nb(project.nbs / ".ipynb_checkpoints" / "01_x-checkpoint.ipynb", ["#export\nold = 1\n"])
    rc, lines, _ = project.export()
    assert lines == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]
    assert sorted(p.name for p in project.exp.iterdir()) == ["__init__.py", "nb_01.py"]


# ---- the module's text ---------------------------------------------------------------------------

def test_header_names_the_notebook_and_says_do_not_edit(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    first = project.module("nb_01").read_text(encoding="utf-8").splitlines()[0]
    assert "nbs/01_x.ipynb" in first and "DO NOT EDIT" in first
    assert str(project.root) not in first  # a path relative to the project, not this machine's


def test_cells_follow_in_order_each_after_a_marker_without_its_directive(project, cell):
    project.nb("01_x", ["#export\ndef a(): return 1\n", cell.md("prose"), "not_exported = 1\n",
                        "# export\ndef b(): return 2\n"])
    project.export()
    text = project.module("nb_01").read_text(encoding="utf-8")
    lines = text.splitlines()
    m1, m4 = lines.index("# ---- nbs/01_x.ipynb, cell 1 ----"), lines.index("# ---- nbs/01_x.ipynb, cell 4 ----")
    assert m1 < lines.index("def a(): return 1") < m4 < lines.index("def b(): return 2")
    assert "not_exported" not in text
    assert not any(line.strip().lower() in ("#export", "# export") for line in lines)
    ns = {}
    exec(compile(text, "nb_01.py", "exec"), ns)
    assert ns["a"]() == 1 and ns["b"]() == 2


def test_utf8_source_round_trips(project):
    src = "#export\nPI = 3.14159  # ≈ π\nWORD = 'naïve — ✓ 数'\n"
    project.nb("01_x", [src])
    project.export()
    raw = project.module("nb_01").read_bytes()
    text = raw.decode("utf-8")  # strict
    assert "PI = 3.14159  # ≈ π\nWORD = 'naïve — ✓ 数'\n" in text
    ns = {}
    exec(text, ns)
    assert ns["WORD"] == "naïve — ✓ 数"


def test_module_ends_with_exactly_one_newline(project):
    project.nb("01_x", ["#export\nx = 1\n\n\n\n", "#export\ny = 2"])
    project.export()
    text = project.module("nb_01").read_text(encoding="utf-8")
    assert "y = 2\n\n\n# ---- __all__" in text and not text.endswith("\n\n")


def test_export_is_byte_for_byte_deterministic(tmp_path, cell):
    outputs = []
    for sub in ("a", "b"):
        proj = Project(tmp_path / sub)
        proj.nb("00_z", ["#export\nZ = {'b': 2, 'a': 1, 'c': {3, 1, 2}}\n"])
        proj.nb("01_x", [cell.md("# t"), "#export\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n",
                         "#exports\nS = 'é'\n"])
        res = proj.cli()  # separate processes: hash seeds differ
        assert res.returncode == 0, res.stderr
        outputs.append({p.name: p.read_bytes() for p in sorted(proj.exp.iterdir())})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3


def test_crlf_sources_are_normalised(project):
    project.nb("01_x", [["#export\r\n", "def f():\r\n", "    return 1\r\n", "x = 2\r", "y = 3\r\n"]])
    project.export()
    crlf = project.module("nb_01").read_bytes()
    assert b"\r" not in crlf
    project.nb("01_x", ["#export\ndef f():\n    return 1\nx = 2\ny = 3\n"])
    rc, lines, _ = project.export()
    assert lines == ["nbs/01_x.ipynb -> exp/nb_01.py unchanged"]
    assert project.module("nb_01").read_bytes() == crlf


# ---- what it prints and when it writes ------------------------------------------------------------

def test_prints_one_line_per_notebook_then_unchanged(project):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n", "#export\ny = 2\n"])
    res = project.cli()
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.splitlines() == ["nbs/00_a.ipynb -> exp/nb_00.py (1 cell)",
                                       "nbs/01_x.ipynb -> exp/nb_01.py (2 cells)"]
    res = project.cli()
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["nbs/00_a.ipynb -> exp/nb_00.py unchanged",
                                       "nbs/01_x.ipynb -> exp/nb_01.py unchanged"]


def test_unchanged_modules_keep_their_mtime_and_changed_ones_are_rewritten(project):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    old = 1_000_000_000  # 2001
    files = [project.module("nb_00"), project.module("nb_01"), project.exp / "__init__.py"]
    for f in files:
        os.utime(f, (old, old))
    project.nb("01_x", ["#export\nx = 2\n"])
    rc, lines, _ = project.export()
    assert lines == ["nbs/00_a.ipynb -> exp/nb_00.py unchanged", "nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]
    assert project.module("nb_00").stat().st_mtime == old
    assert (project.exp / "__init__.py").stat().st_mtime == old
    assert project.module("nb_01").stat().st_mtime != old
    assert "x = 2" in project.module("nb_01").read_text(encoding="utf-8")


def test_creates_exp_and_its_init_when_missing(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    assert not project.exp.exists()
    project.export()
    assert (project.exp / "__init__.py").is_file() and project.module("nb_01").is_file()
    assert (project.exp / "__init__.py").read_text(encoding="utf-8") == n2s.INIT_TEXT


def test_an_existing_init_is_not_overwritten(project):
    project.exp.mkdir()
    (project.exp / "__init__.py").write_text("__version__ = '9'\n", encoding="utf-8")
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    assert (project.exp / "__init__.py").read_text(encoding="utf-8") == "__version__ = '9'\n"


@pytest.mark.parametrize("failure", ["during the write", "during the rename"])
def test_a_failure_while_writing_leaves_the_old_module_intact(project, monkeypatch, failure):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    old = project.module("nb_01").read_bytes()
    project.nb("01_x", ["#export\nx = 2\n" + "y = 3\n" * 1000])
    if failure == "during the write":
        monkeypatch.setattr(n2s, "open", DiskFull(open), raising=False)
    else:
        def replace(src, dst):
            raise OSError(5, "Input/output error")
        monkeypatch.setattr(n2s.os, "replace", replace)
    reason = "No space left on device" if failure == "during the write" else "Input/output error"
    with pytest.raises(n2s.ToolError, match=f"exp/nb_01.py: cannot write it \\({reason}\\); it was left as it was"):
        project.export()
    monkeypatch.undo()
    assert project.module("nb_01").read_bytes() == old
    assert sorted(p.name for p in project.exp.iterdir()) == ["__init__.py", "nb_01.py"]  # no temp file
    rc, lines, _ = project.export()  # and the next export works
    assert lines == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]


def test_only_cells_that_changed_since_the_last_export_are_parsed_again(project, monkeypatch):
    project.nb("01_x", ["#export\ndef f(): return 1\n", "#export\ng = 2\n"])
    assert project.export()[0] == 0
    parsed = []
    real_compile = compile
    monkeypatch.setattr(n2s, "compile", lambda src, *a: parsed.append(src) or real_compile(src, *a), raising=False)
    project.nb("01_x", ["#export\ndef f(): return 1\n", "#export\ng = 3\n"])
    assert project.export()[0] == 0
    assert len(parsed) == 1 and "g = 3" in parsed[0] and "return 1" not in parsed[0]


def test_code_that_parses_but_cannot_compile_is_refused(project):
    project.nb("01_x", ["#export\nx = 1\nreturn x\n"])  # parses, but `return` outside a function
    with pytest.raises(n2s.ExportError, match="cell 1, line 3: export cell is not valid Python: 'return' outside"):
        project.export()
    assert not project.module("nb_01").exists()


def test_a_syntax_error_in_an_edited_cell_is_caught_when_its_module_exists(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    assert project.export()[0] == 0
    project.nb("01_x", ["#export\nx = = 1\n"])
    with pytest.raises(n2s.ExportError, match="cell 1, line 2: export cell is not valid Python"):
        project.export()
    assert "\nx = 1\n" in project.module("nb_01").read_text(encoding="utf-8")


# ---- modules edited by hand -----------------------------------------------------------------------

def hand_edit(path):
    """Change a generated module the way a person would; return the edited text."""
    text = path.read_text(encoding="utf-8").replace("x = 1\n", "x = 1  # tuned by hand\n")
    path.write_text(text, encoding="utf-8")
    return text


def test_a_hand_edited_module_is_not_overwritten_and_force_overrides(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    edited = hand_edit(project.module("nb_01"))
    project.nb("01_x", ["#export\nx = 1\nz = 3\n"])
    res = project.cli()
    assert_clean_error(res, "exp/nb_01.py", "edited by hand", "nbs/01_x.ipynb", "--force")
    assert "Carry the edit into nbs/01_x.ipynb" in res.stderr
    assert "tuned by hand" in res.stderr  # the diff shows what would be lost
    assert project.module("nb_01").read_text(encoding="utf-8") == edited
    res = project.cli("--force")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]
    text = project.module("nb_01").read_text(encoding="utf-8")
    assert "tuned by hand" not in text and "z = 3" in text and not n2s.hand_edited(text)


def test_a_hand_edit_is_refused_even_when_the_notebook_did_not_change(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    edited = hand_edit(project.module("nb_01"))
    with pytest.raises(n2s.ExportError, match="exp/nb_01.py was edited by hand"):
        project.export()
    assert project.module("nb_01").read_text(encoding="utf-8") == edited


def test_a_generated_module_follows_its_notebook_without_force(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    project.nb("01_x", ["#export\nx = 2\n"])
    rc, lines, _ = project.export()
    assert rc == 0 and "x = 2" in project.module("nb_01").read_text(encoding="utf-8")


def test_a_hand_written_module_without_header_is_not_overwritten(project):
    project.exp.mkdir()
    mine = "# my own helpers\ndef helper():\n    return 42\n"
    project.module("nb_01").write_text(mine, encoding="utf-8")
    project.nb("01_x", ["#export\nx = 1\n"])
    res = project.cli()
    assert_clean_error(res, "exp/nb_01.py", "--force")
    assert project.module("nb_01").read_text(encoding="utf-8") == mine
    assert project.cli("--force").returncode == 0
    assert "x = 1" in project.module("nb_01").read_text(encoding="utf-8")


def test_a_refusal_writes_nothing_at_all(project):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    hand_edit(project.module("nb_01"))
    project.nb("00_a", ["#export\na = 2\n"])
    before = project.snapshot()
    assert project.cli().returncode == 2
    assert project.snapshot() == before


# ---- bad input ------------------------------------------------------------------------------------

BAD = {
    "invalid JSON": (b'{"cells": [\n  {"cell_type": "code",,}\n]}', ["line 2, column 24"]),
    "a JSON list": (b"[1, 2, 3]\n", ["not a Jupyter notebook"]),
    "no cells": (b'{"nbformat": 4, "metadata": {}}', ["not a Jupyter notebook"]),
    "cells not a list": (b'{"cells": "nope", "nbformat": 4}', ["not a Jupyter notebook"]),
    "nbformat 3": (b'{"cells": [], "nbformat": 3}', ["nbformat 3"]),
    "cell without type": (b'{"cells": [{"source": "#export"}], "nbformat": 4}', ["cell 1", "cell_type"]),
    "source not text": (b'{"cells": [{"cell_type": "code", "source": 7}], "nbformat": 4}', ["cell 1", "source"]),
    "not UTF-8": (b'{"cells": [{"cell_type": "code", "source": "#export\\nx = \'\xe9\'"}], "nbformat": 4}',
                  ["not UTF-8"]),
    "invalid Python": (json.dumps({"cells": [{"cell_type": "markdown", "source": "# t"}, {
        "cell_type": "code", "source": ["#export\n", "x = 1\n", "def f(:\n", "    pass\n"]}],
        "nbformat": 4}).encode(), ["cell 2, line 3", "not valid Python"]),
    "invalid Python after blank lines": (
        b'{"cells": [{"cell_type": "code", "source": "#export\\n\\n\\nx = = 1\\n"}], "nbformat": 4}',
        ["cell 1, line 4", "not valid Python"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_notebook_gives_one_clear_error_and_writes_nothing(project, case):
    content, expected = BAD[case]
    project.nb("00_good", ["#export\ngood = 1\n"])
    project.export()
    project.nb("00_good", ["#export\ngood = 2\n"])  # an export would now rewrite nb_00.py
    (project.nbs / "01_bad.ipynb").write_bytes(content)
    before = project.snapshot()
    res = project.cli()
    assert_clean_error(res, "nbs/01_bad.ipynb", *expected)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stdout == ""
    assert project.snapshot() == before  # check everything before writing anything


def test_every_bad_notebook_is_reported_in_one_run(project):
    (project.nbs / "01_bad.ipynb").write_bytes(b"{")
    project.nb("02_bad", ["#export\ndef (:\n"])
    res = project.cli()
    assert_clean_error(res, "nbs/01_bad.ipynb", "nbs/02_bad.ipynb, cell 1, line 2")
    assert not project.exp.exists()


def test_a_utf8_bom_is_accepted(project):
    path = project.nb("01_x", ["#export\nx = 1\n"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert project.cli().returncode == 0 and project.module("nb_01").exists()


@pytest.mark.parametrize("arg", ["nbs/99_missing.ipynb", "99_missing", "01_x.txt"])
def test_missing_notebook_is_a_clear_error(project, arg):
    project.nb("01_x", ["#export\nx = 1\n"])
    (project.nbs / "01_x.txt").write_text("not a notebook", encoding="utf-8")
    res = project.cli(arg)
    assert_clean_error(res, "no notebook named", repr(arg))
    assert not project.exp.exists()


def test_missing_notebooks_folder_is_a_clear_error(project):
    project.nbs.rmdir()
    assert_clean_error(project.cli(), "notebooks folder", "does not exist")


def test_empty_notebooks_folder_is_a_clear_error(project):
    assert_clean_error(project.cli(), "no numbered notebooks")


def test_unreadable_settings_is_a_clear_error(project):
    (project.root / "settings.ini").write_text("lib_path = exp\n", encoding="utf-8")  # no [section]
    assert_clean_error(project.cli(), "settings.ini")


def test_an_unknown_flag_is_refused_before_anything_is_written(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    res = project.cli("--chek")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert not project.exp.exists()


# ---- --check --------------------------------------------------------------------------------------

def test_check_passes_on_a_clean_tree(project):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n"])
    project.nb("02_prose", ["x = 1\n"])
    project.export()
    res = project.cli("--check")
    assert res.returncode == 0, res.stdout
    assert res.stdout.splitlines() == ["exp/ matches the notebooks (3 checked)"]


def test_check_names_a_stale_module_with_a_diff_and_writes_nothing(project):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    project.nb("01_x", ["#export\nx = 2\n"])
    before = project.snapshot()
    res = project.cli("--check")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    out = res.stdout
    assert "stale: exp/nb_01.py differs from what nbs/01_x.ipynb exports" in out
    assert "-x = 1" in out and "+x = 2" in out
    assert "nb_00" not in out
    assert "1 module(s) out of date" in out
    assert project.snapshot() == before


def test_check_reports_missing_and_orphaned_modules_together(project):
    for name in ["00_a", "01_b", "02_c", "03_d"]:
        project.nb(name, ["#export\nv = 1\n"])
    project.export()
    project.module("nb_00").unlink()  # missing
    (project.nbs / "01_b.ipynb").unlink()  # orphaned: its notebook is gone
    project.nb("02_c", ["v = 1\n"])  # orphaned: its notebook no longer exports anything
    project.nb("03_d", ["#export\nv = 2\n"])  # stale
    before = project.snapshot()
    res = project.cli("--check")
    assert res.returncode == 1
    out = res.stdout
    assert "missing: exp/nb_00.py (export nbs/00_a.ipynb)" in out
    assert "orphaned: exp/nb_01.py was generated from nbs/01_b.ipynb, which no longer exists" in out
    assert "orphaned: exp/nb_02.py exists but nbs/02_c.ipynb has no export cells" in out
    assert "stale: exp/nb_03.py" in out
    assert "4 module(s) out of date" in out
    assert project.snapshot() == before


def test_check_reports_a_missing_init_and_creates_nothing(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    res = project.cli("--check")
    assert res.returncode == 1
    assert "missing: exp/nb_01.py" in res.stdout and "missing: exp/__init__.py" in res.stdout
    assert not project.exp.exists()


def test_check_ignores_a_hand_written_module_that_no_notebook_claims(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    project.module("nb_99").write_text("def helper():\n    return 1\n", encoding="utf-8")
    assert project.cli("--check").returncode == 0


def test_check_fails_on_a_hand_edited_module(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    hand_edit(project.module("nb_01"))
    res = project.cli("--check")
    assert res.returncode == 1 and "stale: exp/nb_01.py" in res.stdout and "tuned by hand" in res.stdout


def test_check_gives_a_clear_error_on_a_bad_notebook(project):
    (project.nbs / "01_bad.ipynb").write_bytes(b"{")
    assert_clean_error(project.cli("--check"), "nbs/01_bad.ipynb", "line 1, column 2")


# ---- --up_to --------------------------------------------------------------------------------------

@pytest.fixture
def five(project):
    for name in ["00_a", "01_b", "02_c", "02a_d", "03_e"]:
        project.nb(name, ["#export\nv = 1\n"])
    return project


def modules(project):
    return sorted(p.stem for p in project.exp.glob("nb_*.py"))


@pytest.mark.parametrize("up_to, expected", [
    ("02", ["nb_00", "nb_01", "nb_02"]),
    (2, ["nb_00", "nb_01", "nb_02"]),
    ("02a", ["nb_00", "nb_01", "nb_02", "nb_02a"]),
    ("00", ["nb_00"]),
    ("03", ["nb_00", "nb_01", "nb_02", "nb_02a", "nb_03"]),
])
def test_up_to_exports_every_notebook_up_to_and_including_the_prefix(five, up_to, expected):
    rc, lines, _ = five.export(up_to=up_to)
    assert rc == 0 and modules(five) == expected and len(lines) == len(expected)


@pytest.mark.parametrize("args", [("--up_to", "2"), ("--up_to=02",), ("--up_to", "02")])
def test_up_to_on_the_command_line(five, args):
    res = five.cli(*args)
    assert res.returncode == 0, res.stderr
    assert modules(five) == ["nb_00", "nb_01", "nb_02"]


@pytest.mark.parametrize("up_to", ["05", "02b", "x"])
def test_up_to_an_unknown_prefix_is_an_error(five, up_to):
    res = five.cli("--up_to", up_to)
    assert_clean_error(res, f"--up_to {up_to}", "prefix")
    assert not five.exp.exists()


# ---- naming a notebook on the command line -------------------------------------------------------

@pytest.mark.parametrize("arg", ["nbs/01_x.ipynb", "01_x.ipynb", "01_x", "ABSOLUTE"])
def test_each_argument_form_exports_the_one_notebook(project, arg):
    project.nb("00_a", ["#export\na = 1\n"])
    project.nb("01_x", ["#export\nx = 1\n"])
    if arg == "ABSOLUTE":
        arg = str(project.nbs / "01_x.ipynb")
    res = project.cli(arg)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]
    assert modules(project) == ["nb_01"]


def test_several_notebooks_can_be_named(project):
    for name in ["00_a", "01_x", "02_y"]:
        project.nb(name, ["#export\nv = 1\n"])
    res = project.cli("00_a", "02_y.ipynb")
    assert res.returncode == 0 and modules(project) == ["nb_00", "nb_02"]


def test_help_exits_0_and_shows_the_usage(project):
    res = project.cli("--help")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    shown = res.stdout + res.stderr
    for word in ["notebook2script.py", "--up_to", "--check", "--force", "NOTEBOOKS"]:
        assert word in shown
    assert not project.exp.exists()


# ---- settings.ini and a copied script -------------------------------------------------------------

def test_settings_ini_paths_are_respected(project, make_nb):
    (project.root / "settings.ini").write_text(
        "[DEFAULT]\nlib_name = mylib\nlib_path = mylib\nnbs_path = notebooks\n", encoding="utf-8")
    make_nb(project.root / "notebooks" / "01_x.ipynb", ["#export\nx = 1\n"])
    project.nb("01_ignored", ["#export\nignored = 1\n"])  # nbs/ is not the notebooks folder here
    res = project.cli()
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["notebooks/01_x.ipynb -> mylib/nb_01.py (1 cell)"]
    text = (project.root / "mylib" / "nb_01.py").read_text(encoding="utf-8")
    assert "File to edit: notebooks/01_x.ipynb" in text.splitlines()[0]
    assert (project.root / "mylib" / "__init__.py").is_file() and not project.exp.exists()
    assert project.cli("--check").returncode == 0


def test_without_settings_ini_the_copied_script_uses_nbs_and_exp_beside_it(project):
    assert not (project.root / "settings.ini").exists()
    project.nb("01_x", ["#export\nx = 1\n"])
    elsewhere = project.root / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([sys.executable, str(project.script)], cwd=elsewhere, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["nbs/01_x.ipynb -> exp/nb_01.py (1 cell)"]
    assert project.module("nb_01").is_file() and not (elsewhere / "exp").exists()
    ns = {}
    exec(project.module("nb_01").read_text(encoding="utf-8"), ns)
    assert ns["x"] == 1


# ---- the shared command line: what --help shows is what is accepted ------------------------------

import clean_nbs  # noqa: E402
import run_notebook  # noqa: E402

MAINS = {"notebook2script.py": n2s.cli, "run_notebook.py": run_notebook.main, "clean_nbs.py": clean_nbs.main}


def help_text(script):
    res = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PAGER": "cat"})
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return res.stdout


def help_flags(text):
    """`{name: (short letter or None, type shown)}` from the FLAGS section of fire's help."""
    flags, section = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line.strip()
        elif section == "FLAGS" and line.startswith("    -"):
            spec = line.strip()
            short = spec[1] if not spec.startswith("--") else None
            name = spec.split("--", 1)[1].split("=")[0]
            flags[name] = [short, None]
        elif section == "FLAGS" and line.strip().startswith("Type: ") and flags:
            flags[list(flags)[-1]][1] = line.strip()[len("Type: "):]
    return {name: tuple(v) for name, v in flags.items()}


@pytest.mark.parametrize("script", list(MAINS))
def test_help_lists_exactly_the_flags_the_command_accepts(script):
    main, text = MAINS[script], help_text(script)
    shown = help_flags(text)
    code = main.__code__
    assert list(shown) == list(code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount])
    for name, (short, kind) in shown.items():
        forms = [[f"--{name}"], [f"-{short}"], [f"--{name}=True"]] if kind == "bool" else \
                [[f"--{name}=7"], [f"--{name}", "7"], [f"-{short}", "7"]]
        for argv in forms:
            args, kwargs = n2s.parse_command_line(main, argv)
            assert args == [] and list(kwargs) == [name], argv
        if kind == "bool":
            assert n2s.parse_command_line(main, [f"--{name}=False"])[1] == {name: False}
            for refused in [f"--{name}=on", f"--{name}=1", f"--no{name}", f"--no-{name}"]:
                with pytest.raises(n2s.ToolError):
                    n2s.parse_command_line(main, [refused])
    for word in ["Usage:", "Exit codes:", "NOTEBOOKS", "POSITIONAL ARGUMENTS"]:
        assert word in text
    assert "Optional[]" not in text


@pytest.mark.parametrize("script", list(MAINS))
def test_every_usage_line_in_the_help_is_accepted(script):
    lines = [line.strip() for line in help_text(script).splitlines() if line.strip().startswith("python ")]
    assert len(lines) >= 3
    for line in lines:
        argv = line.split("#")[0].split()[2:]
        assert n2s.parse_command_line(MAINS[script], argv) is not None, line


@pytest.mark.parametrize("argv", [["-c"], ["--check"], ["--check=True"], ["--up_to=02"], ["--up-to", "02"],
                                  ["-u", "2"], ["-f", "--up_to=02a"], ["--check=False", "-u", "03"]])
def test_accepted_flags_mean_what_python_fire_makes_of_them(argv):
    """The flag forms --help shows give the same call as python-fire's own parser would."""
    import fire

    calls = []

    def recorder(*notebooks, up_to: str = None, check: bool = False, force: bool = False):
        calls.append((notebooks, {"up_to": up_to, "check": check, "force": force}))

    fire.Fire(recorder, command=argv)
    args, kwargs = n2s.parse_command_line(n2s.cli, argv)
    ours = {"up_to": None, "check": False, "force": False, **kwargs}
    theirs = calls[0][1]
    theirs["up_to"] = None if theirs["up_to"] is None else str(theirs["up_to"])  # fire reads `2` as 2
    assert (tuple(args), ours) == (calls[0][0], theirs)


@pytest.mark.parametrize("argv, message", [
    (["--check=on"], "--check is a flag and takes no value: write --check alone (or --check=True, "
                     "--check=False), not --check=on"),
    (["--chek"], "unknown flag --chek (did you mean --check?); the flags are --up_to, --check, --force"),
    (["-x"], "unknown flag -x"),
    (["--check", "--check"], "--check is given twice"),
    (["--up_to"], "--up_to needs a value"),
    (["--up_to", "--check"], "--up_to needs a value"),
    (["01_x", "--up_to=01"], "name notebooks or give --up_to, not both"),
])
def test_a_bad_flag_is_one_error_line_exit_2_and_nothing_written(project, argv, message):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    project.nb("01_x", ["#export\nx = 2\n"])  # stale: any export would rewrite exp/nb_01.py
    before = project.snapshot()
    res = project.cli(*argv)
    assert_clean_error(res)
    assert res.stderr == f"error: {message}\n" or res.stderr.startswith(f"error: {message}"), res.stderr
    assert len(res.stderr.splitlines()) == 1 and res.stdout == ""
    assert project.snapshot() == before


def test_check_followed_by_a_notebook_checks_that_notebook(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.nb("02_y", ["#export\ny = 1\n"])
    project.export("01_x")
    res = project.cli("--check", "01_x")
    assert res.returncode == 0 and "(1 checked)" in res.stdout


def test_a_notebook_name_stays_text(project):
    project.nb("1_000", ["#export\nx = 1\n"])  # fire alone would read `1_000` as the number 1000
    res = project.cli("1_000")
    assert res.returncode == 0, res.stderr
    assert project.module("nb_1").is_file()


def test_run_cli_turns_tool_and_os_errors_into_one_line(capsys):
    def main(*names, flag: bool = False):
        raise OSError(28, "No space left on device", "exp/nb_01.py")

    with pytest.raises(SystemExit) as exit_:
        n2s.run_cli(main, [])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: exp/nb_01.py: No space left on device\n"


# ---- names that cannot become modules, faults of the file system ----------------------------------

@pytest.mark.parametrize("args", [(), ("02-data prep",), ("nbs/02-data prep.ipynb",)])
def test_a_name_that_cannot_become_a_module_is_refused(project, args):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.nb("02-data prep", ["#export\ny = 1\n"])
    res = project.cli(*args)
    assert_clean_error(res, "nbs/02-data prep.ipynb: cannot become a module", "ASCII letters and digits")
    assert not project.exp.exists()


def test_a_notebook_that_is_a_folder_is_one_clear_error(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    (project.nbs / "02_dir.ipynb").mkdir()
    res = project.cli()
    assert_clean_error(res, "nbs/02_dir.ipynb: cannot read it: Is a directory")
    assert not project.exp.exists()
    assert_clean_error(project.cli("02_dir"), "is a folder, not a notebook file")


def test_a_package_folder_that_is_a_file_is_one_clear_error(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.exp.write_text("not a folder\n", encoding="utf-8")
    res = project.cli()
    assert_clean_error(res, "exp")
    assert project.exp.read_text(encoding="utf-8") == "not a folder\n"


class Refuse:
    """A stand-in for `open` that refuses to create files, as in a read-only folder."""

    def __init__(self, real_open):
        self.real_open = real_open

    def __call__(self, path, mode="r", *args, **kwargs):
        if "w" in mode or "x" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return self.real_open(path, mode, *args, **kwargs)


def test_an_unwritable_package_folder_is_one_clear_error_and_nothing_changes(project, monkeypatch):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.nb("02_y", ["#export\ny = 1\n"])
    project.export()
    project.nb("01_x", ["#export\nx = 2\n"])
    project.nb("02_y", ["#export\ny = 2\n"])
    before = project.snapshot()
    monkeypatch.setattr(n2s, "open", Refuse(open), raising=False)
    with pytest.raises(n2s.ToolError, match=r"exp/nb_01.py: cannot write it \(Permission denied\); "
                                            "it was left as it was, as was every other file"):
        project.export()
    monkeypatch.undo()
    assert project.snapshot() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_package_folder_from_the_command_line(project):
    project.nb("01_x", ["#export\nx = 1\n"])
    project.export()
    project.nb("01_x", ["#export\nx = 2\n"])
    project.exp.chmod(0o555)
    try:
        assert_clean_error(project.cli(), "exp/nb_01.py: cannot write it (Permission denied)")
    finally:
        project.exp.chmod(0o755)


def test_a_full_disk_halfway_through_several_modules_changes_none(project, monkeypatch):
    for name in ["01_a", "02_b", "03_c"]:
        project.nb(name, ["#export\nv = 1\n"])
    project.export()
    for name in ["01_a", "02_b", "03_c"]:
        project.nb(name, ["#export\nv = 2\n"])
    before = project.snapshot()
    real_open, opened = open, []

    def full_on_the_second(path, mode="r", *args, **kwargs):
        if "w" in mode:
            opened.append(path)
            if len(opened) == 2:
                return DiskFull(real_open)(path, mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(n2s, "open", full_on_the_second, raising=False)
    with pytest.raises(n2s.ToolError, match="No space left on device"):
        project.export()
    monkeypatch.undo()
    assert project.snapshot() == before  # the first module's new text was not renamed in either


# ---- checking a module's cells in one compile ----------------------------------------------------

@pytest.mark.parametrize("cells, where", [
    (["#export\ndef f(:\n    pass\n", "#export\nx = 1\n"], "cell 1, line 2"),
    (["#export\nx = 1\n", "#export\ny = (1,\n"], "cell 2, line 2"),
    (["#export\ndef f():\n", "#export\n    return 1\n"], "cell 1, line 2"),  # a block split over cells
    (["#export\ns = '''\n", "#export\nt = 1\n'''\n"], "cell 1, line 2"),  # a string open at a cell's end
    (["#export\nx = f(\n", "#export\n)\n"], "cell 1, line 2"),  # a bracket open at a cell's end
    (["#export\nx = 1\n", "#export\nfrom __future__ import annotations\n"], "cell 2, line 2"),
])
def test_each_cell_must_stand_alone_and_the_error_names_its_cell(project, cells, where):
    project.nb("01_x", cells)
    with pytest.raises(n2s.ExportError, match=f"nbs/01_x.ipynb, {where}: export cell is not valid Python"):
        project.export()
    assert not project.exp.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs at `tmp_path/disk` (skipped where mounting is not allowed, e.g. not root)."""
    import shutil

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_really_full_disk_is_one_error_line_and_changes_nothing(tiny_disk):
    import shutil

    project = Project(tiny_disk / "project")
    project.nb("01_a", ["#export\na = 1\n"])
    project.nb("02_b", ["#export\nb = 1\n"])
    assert project.cli().returncode == 0
    project.nb("01_a", ["#export\na = 2\n"])
    project.nb("02_b", ["#export\nb = 2\n" + "x = 0  # padding\n" * 3000])  # a 50 KB module
    free = shutil.disk_usage(tiny_disk).free
    (tiny_disk / "filler").write_bytes(b"x" * (free - 16 * 1024))  # 16 KB left
    before = project.snapshot()
    res = project.cli()
    assert_clean_error(res, "exp/nb_02.py: cannot write it (No space left on device)")
    assert len(res.stderr.splitlines()) == 1
    assert project.snapshot() == before  # nb_01.py, which fitted, was not replaced either; no temp files
