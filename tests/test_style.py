"""Every exported module reads well: lines of at most 100 characters, and a docstring on every
exported function, class and public method (STYLE.md 5 and 10)."""
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "exp").glob("nb_*.py"))
SPECIAL = ('__call__', '__iter__', '__len__', '__getitem__')   # dunders a reader calls directly


def exported(module):
    "The functions and classes defined in `module` (not those it imports)."
    return [o for n, o in vars(module).items() if not n.startswith('_')
            and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == module.__name__]


@pytest.mark.parametrize("name", MODULES)
def test_lines_are_at_most_100_characters(name):
    path = ROOT / "exp" / f"{name}.py"
    long = [(i, len(l)) for i, l in enumerate(path.read_text(encoding='utf-8').splitlines(), 1)
            if len(l) > 100]
    assert not long, f"{path.name}: lines longer than 100 characters (line, length): {long}"


@pytest.mark.parametrize("name", MODULES)
def test_every_export_and_public_method_has_a_docstring(name):
    module = importlib.import_module(f"exp.{name}")
    missing = [o.__name__ for o in exported(module) if not o.__doc__]
    for cls in (o for o in exported(module) if inspect.isclass(o)):
        for attr, f in vars(cls).items():
            public = not attr.startswith('_') or attr in SPECIAL
            if inspect.isfunction(f) and public and not f.__doc__:
                missing.append(f'{cls.__name__}.{attr}')
    assert not missing, f"exp/{name}.py: no docstring: {missing}"
