"""The test helpers exported by nbs/01_matmul.ipynb: they must pass when they should and fail when they should."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from exp import nb_01

pytestmark = pytest.mark.nb01
ROOT = Path(__file__).resolve().parents[1]


def test_chain_gives_the_basics():
    ns = {}
    exec("from exp.nb_01 import *", ns)
    for name in ['torch', 'tensor', 'math', 'TEST', 'test_eq', 'test_near', 'get_data',
                 'get_fashion_mnist', 'FASHION_CLASSES', 'show_images', 'mnist_5k', 'read_idx',
                 'matmul_loops', 'matmul_elementwise', 'matmul_broadcast', 'matmul_einsum']:
        assert name in ns, name
    assert ns['TEST'] == 'test'
    assert 'np' not in ns and 'Path' not in ns   # imports are not carried (see `__all__`, 00_exports)


@pytest.mark.parametrize('module', ['exp.nb_00a', 'exp.nb_01'])
def test_importing_does_not_import_matplotlib(module):
    "Matplotlib is imported inside the functions that plot, so importing the module stays cheap."
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('matplotlib', 'fastprogress')))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, 'PYTHONPATH': str(ROOT)}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]', out.stdout


@pytest.mark.parametrize('a, b', [
    ('test', 'test'),
    (3, 3),
    (torch.arange(10_000).view(100, 100), torch.arange(10_000).view(100, 100)),
    (torch.zeros(2, 3).shape, (2, 3)),
    ((torch.ones(2), [torch.eye(3), 'x']), (torch.ones(2), [torch.eye(3), 'x'])),
    ({'w': torch.ones(2, 2), 'b': [torch.zeros(1)]}, {'w': torch.ones(2, 2), 'b': [torch.zeros(1)]}),
    (np.arange(6).reshape(2, 3), torch.arange(6).view(2, 3)),
    (torch.tensor(5), 5),
])
def test_eq_passes(a, b):
    nb_01.test_eq(a, b)
    assert nb_01.equals(a, b)


@pytest.mark.parametrize('a, b', [
    ('test', 'tset'),
    (torch.arange(10_000), torch.arange(10_000).flip(0)),
    (torch.ones(2, 3), torch.ones(3, 2)),                        # same numbers, other shape
    (torch.ones(3), torch.ones(1)),                              # no broadcasting
    (torch.ones(3), torch.ones(3, 1)),
    ([torch.ones(2)], [torch.ones(2), torch.ones(2)]),           # lengths differ
    ((torch.ones(2), [torch.eye(3)]), (torch.ones(2), [torch.eye(3) * 2])),  # deep difference
    ({'w': torch.ones(2)}, {'v': torch.ones(2)}),
])
def test_eq_fails(a, b):
    assert not nb_01.equals(a, b)
    with pytest.raises(AssertionError):
        nb_01.test_eq(a, b)


def test_eq_message_shows_both_values():
    with pytest.raises(AssertionError) as e:
        nb_01.test_eq(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    assert 'tensor([1, 2, 3])' in str(e.value) and 'tensor([1, 2, 4])' in str(e.value)


def test_eq_works_with_grad():
    w = torch.ones(3, requires_grad=True)
    nb_01.test_eq(w, torch.ones(3))
    nb_01.test_near(w * 2, torch.full((3,), 2.))


@pytest.mark.parametrize('a, b, ok', [
    (1.0, 1.0005, True),          # within rtol 1e-3
    (1.0, 1.002, False),          # outside rtol
    (0.0, 5e-6, True),            # within atol 1e-5
    (0.0, 1e-4, False),
    (torch.tensor([0.1 + 0.2]), torch.tensor([0.3]), True),
    (torch.ones(3), torch.ones(1), False),             # no broadcasting
    (torch.ones(2, dtype=torch.float64), torch.ones(2), True),  # dtypes may differ
    ([torch.ones(2), (torch.zeros(1),)], [torch.ones(2), (torch.zeros(1),)], True),
    ([torch.ones(2), (torch.zeros(1),)], [torch.ones(2), (torch.ones(1),)], False),
])
def test_near(a, b, ok):
    assert nb_01.near(a, b) == ok
    if ok: nb_01.test_near(a, b)
    else:
        with pytest.raises(AssertionError) as e: nb_01.test_near(a, b)
        assert 'near' in str(e.value)


def test_test_uses_cmp_and_cname():
    nb_01.test(3, 2, lambda a, b: a > b)
    with pytest.raises(AssertionError) as e:
        nb_01.test(2, 3, lambda a, b: a > b, 'greater than')
    assert str(e.value).startswith('greater than') and '2' in str(e.value) and '3' in str(e.value)


def test_test_fail():
    def boom(): raise ValueError('shapes (2, 3) and (4, 5)')
    nb_01.test_fail(boom)
    nb_01.test_fail(boom, '(2, 3)', ValueError)
    with pytest.raises(AssertionError, match='expected'):
        nb_01.test_fail(boom, 'something else')
    with pytest.raises(AssertionError, match='nothing was raised'):
        nb_01.test_fail(lambda: None)
    with pytest.raises(ValueError):   # another kind of error is not swallowed
        nb_01.test_fail(boom, exc=TypeError)


def test_every_def_has_a_one_line_docstring():
    import inspect
    defs = [obj for name, obj in vars(nb_01).items()
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == nb_01.__name__]
    assert len(defs) > 10
    for obj in defs:
        doc = obj.__doc__
        assert doc and doc.strip() and '\n' not in doc.strip(), obj.__name__
