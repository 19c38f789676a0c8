"""Importing `exp.nb_03` (and so `exp.nb_02`, `exp.nb_01`) stays cheap: no matplotlib, and the export
cells of 02 and 03 import only what they use."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.nb03
ROOT = Path(__file__).resolve().parents[1]


def module_imports(path):
    "Top-level module names that `path` imports at module level."
    tree = ast.parse(path.read_text(encoding='utf-8'))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import): names |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0: names.add(node.module.split('.')[0])
    return names


@pytest.mark.parametrize('name', ['nb_02', 'nb_03'])
def test_export_cells_do_not_import_matplotlib(name):
    assert 'matplotlib' not in module_imports(ROOT / 'exp' / f'{name}.py')


def test_nb03_imports_only_what_it_uses():
    assert module_imports(ROOT / 'exp' / 'nb_03.py') == {'exp', 'math', 'numbers', 'time'}


def test_import_exp_nb_03_does_not_load_matplotlib_or_fastprogress():
    "The whole chain up to nb_03 in a fresh interpreter: plots and progress bars import their libraries."
    code = ("import sys, exp.nb_03\n"
            "print(sorted(m for m in sys.modules if m in ('matplotlib', 'fastprogress')))")
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    env.pop('MPLBACKEND', None)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]', f"importing exp.nb_03 loaded {out.stdout.strip()} (imported at module level up the chain?)"


def test_star_import_still_gives_the_basics():
    code = "from exp.nb_03 import *\nprint(torch.__name__, tensor.__name__, math.__name__, fit.__name__)"
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['torch', 'tensor', 'math', 'fit']
