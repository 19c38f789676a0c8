"""`__all__` in every generated module: a star import carries the lesson's names, not its imports.

Throwaway projects check the rules (public top-level names, the chain's `__all__`, `_all_` for a
declared re-export, clear errors); the real `exp` package checks the result: no module object comes
with `import *` but the declared ones, every name a later notebook uses arrives, nothing is missing.
"""
import ast
import builtins
import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import notebook2script as n2s  # noqa: E402

pytestmark = pytest.mark.toolchain

MODULES = sorted(p.stem for p in (ROOT / "exp").glob("nb_*.py"))
PROMISED = {"math", "torch", "tensor"}  # 01_matmul's `_all_` re-exports them (the README promises)


def star(project, module):
    """`{name: type name}` of what `from lib.<module> import *` gives, in a fresh interpreter."""
    code = (f"ns = {{}}; exec('from lib.{module} import *', ns); del ns['__builtins__']\n"
            "import json; print(json.dumps({k: type(v).__name__ for k, v in ns.items()}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def lib_project(project):
    """The throwaway project with its package named `lib` (so it cannot meet the real `exp`)."""
    (project.root / "settings.ini").write_text("[DEFAULT]\nlib_name = lib\nlib_path = lib\n",
                                               encoding="utf-8")
    project.exp = project.root / "lib"
    return project


def test_all_holds_public_top_level_names_not_imports(lib_project):
    p = lib_project
    p.nb("00_a", ["#export\nimport os, math\nfrom pathlib import Path\n",
                  "#export\ndef f(): return 1\nclass C: pass\n_hidden = 1\nX, (Y, *Z) = 1, (2, 3)\n"
                  "tmp = 5\ndel tmp\nif True:\n    def g(): pass\n"
                  "try: import json\nexcept ImportError: pass\n"
                  "obj = types = None\n"])
    assert p.export()[0] == 0
    assert star(p, "nb_00") == {"f": "function", "C": "type", "X": "int", "Y": "int", "Z": "list",
                                "g": "function", "obj": "NoneType", "types": "NoneType"}


def test_the_chain_reexports_the_previous_modules_all_and_all_declares_imports(lib_project):
    p = lib_project
    p.nb("00_a", ["#export\nimport os\ndef f(): return 1\n"])
    p.nb("01_b", ["#export\nfrom lib.nb_00 import *\nimport math, torch as T\n_all_ = ['math']\n"
                  "def g(): return f()\n"])
    p.nb("02_c", ["#export\nfrom lib.nb_01 import *\nh = g\n"])
    assert p.export()[0] == 0
    assert star(p, "nb_02") == {"f": "function", "g": "function", "h": "function", "math": "module"}
    text = p.module("nb_01").read_text(encoding="utf-8")
    assert "import lib.nb_00 as _nb_00\n__all__ = _nb_00.__all__ + [\n    'g', 'math']\n" in text
    assert p.export("01_b", check_only=True)[0] == 0  # the text is stable


def test_a_relative_chain_import_is_followed(lib_project):
    p = lib_project
    p.nb("00_a", ["#export\ndef f(): return 1\n"])
    p.nb("01_b", ["#export\nfrom .nb_00 import *\n"])
    assert p.export()[0] == 0
    assert "from . import nb_00 as _nb_00\n__all__ = list(_nb_00.__all__)\n" in \
        p.module("nb_01").read_text(encoding="utf-8")
    assert star(p, "nb_01") == {"f": "function"}


@pytest.mark.parametrize("decl, msg", [
    ("_all_ = [math]", "cell 1: `_all_` must be a list of names as strings"),
    ("_all_ = ['not a name']", "cell 1: `_all_` must be a list of names as strings"),
    ("_all_ = ['numpy']", "cell 1: `_all_` lists 'numpy', which no export cell imports or defines"),
])
def test_a_bad_all_declaration_is_one_clear_error_and_nothing_is_written(lib_project, decl, msg):
    lib_project.nb("00_a", [f"#export\nimport math\n{decl}\n"])
    with pytest.raises(n2s.ExportError, match=re.escape(msg)):
        lib_project.export()
    assert not lib_project.module("nb_00").exists()


# ---- the real package ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_star_import_brings_no_module_but_the_declared_ones(name):
    declared = {x for m in MODULES for x in getattr(importlib.import_module(f"exp.{m}"), "_all_", [])}
    ns = {}
    exec(f"from exp.{name} import *", ns)
    modules = {k for k, v in ns.items() if isinstance(v, types.ModuleType)}
    assert modules <= declared, sorted(modules - declared)
    if name not in ("nb_00", "nb_00a"):
        assert PROMISED <= set(ns)


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_only_names_that_exist(name):
    mod = importlib.import_module(f"exp.{name}")
    assert [x for x in mod.__all__ if not hasattr(mod, x)] == []


def _notebook_code(path):
    """A notebook's code cells as one Python text (IPython magics and shell lines blanked)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for line in src.splitlines():
            stripped = line.lstrip()
            magic = re.match(r"%(load_ext|matplotlib|autoreload)", stripped)
            if stripped.startswith(("%%", "!")) or magic:
                line = ""
            elif stripped.startswith("%"):  # %time expr, %timeit -n 3 expr: keep the expression
                line = re.sub(r"^(\s*)%\w+\s*(-\w+( \d+)?\s*)*", r"\1", line)
            elif re.match(r"\s*\w+\s*=\s*!", line):
                line = ""
            lines.append(line)
    return "\n".join(lines)


def _free_names(tree):
    """Names read in `tree` that nothing in it binds (assignment, def, argument, import, ...)."""
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return used - bound - set(dir(builtins)) - {"get_ipython", "display"}


NOTEBOOKS = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_name_a_notebook_uses_arrives_with_its_star_import(nb):
    tree = ast.parse(_notebook_code(nb))
    chain = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.names[0].name == "*" and n.module.startswith("exp.")]
    given = set().union(*(importlib.import_module(m).__all__ for m in chain))
    assert sorted(_free_names(tree) - given) == []


@pytest.mark.parametrize("name", MODULES)
def test_every_name_a_module_uses_arrives_with_its_star_import(name):
    mod = importlib.import_module(f"exp.{name}")
    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    chain = [n.module for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.names[0].name == "*"]
    given = set().union(*(importlib.import_module(m).__all__ for m in chain))
    assert sorted(_free_names(tree) - given - {"__all__"}) == []


@pytest.mark.parametrize("name", MODULES)
def test_every_public_definition_is_exported(name):
    mod = importlib.import_module(f"exp.{name}")
    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    defs = {n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")}
    assert defs <= set(mod.__all__)
