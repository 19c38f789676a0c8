"""`exp/nb_03.py` reads well: lines of at most 100 characters and a docstring on every exported
function, class and public method."""
import inspect
from pathlib import Path

import pytest

from exp import nb_03

pytestmark = pytest.mark.nb03
MODULE = nb_03
PATH = Path(MODULE.__file__)


def test_lines_are_at_most_100_characters():
    "The first line is notebook2script's header, which names the notebook: it is not ours to wrap."
    long = [(i, len(l)) for i, l in enumerate(PATH.read_text(encoding='utf-8').splitlines(), 1)
            if i > 1 and len(l) > 100]
    assert not long, f"{PATH.name}: lines longer than 100 characters (line, length): {long}"


def exported():
    "The functions and classes defined in the module (not those it imports)."
    return [o for n, o in vars(MODULE).items() if not n.startswith('_')
            and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == MODULE.__name__]


def test_every_export_and_public_method_has_a_docstring():
    missing = [o.__name__ for o in exported() if not o.__doc__]
    for cls in (o for o in exported() if inspect.isclass(o)):
        for name, f in vars(cls).items():
            public = not name.startswith('_') or name in ('__call__', '__iter__', '__len__', '__getitem__')
            if inspect.isfunction(f) and public and not f.__doc__: missing.append(f'{cls.__name__}.{name}')
    assert not missing, f"no docstring: {missing}"
