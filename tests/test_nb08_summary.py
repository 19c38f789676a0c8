"""`summary` of `exp.nb_08`: shapes, parameters and multiply-adds checked against hand counts."""
import pytest
import torch
from torch import nn

from exp import nb_08

pytestmark = pytest.mark.nb08


def test_hand_counts_of_a_small_cnn():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, stride=2, padding=1),
                          nn.Flatten(), nn.Linear(8 * 5 * 5, 10))
    s = nb_08.summary(model, torch.randn(2, 1, 10, 10))
    assert [r['output'] for r in s.rows] == [(1, 4, 10, 10), (1, 4, 10, 10), (1, 8, 5, 5),
                                             (1, 200), (1, 10)]
    assert [r['params'] for r in s.rows] == [4 * 9 + 4, 0, 8 * 4 * 9 + 8, 0, 200 * 10 + 10]
    macs = [10 * 10 * 4 * 9, 0, 5 * 5 * 8 * 4 * 9, 0, 200 * 10]   # per output: one MAC per weight
    assert [r['mmacs'] for r in s.rows] == pytest.approx([m / 1e6 for m in macs])
    assert s.params == sum(p.numel() for p in model.parameters())
    assert s.mmacs == pytest.approx(sum(macs) / 1e6)


def test_resblock_counted_as_one_row_with_all_its_convolutions():
    block = nb_08.ResBlock(2, 4, stride=2)   # 3x3 2->4 at 8x8, 3x3 4->4 at 4x4, 1x1 2->4 at 4x4
    s = nb_08.summary(nn.Sequential(block), torch.randn(3, 2, 8, 8))
    assert s.rows[0]['output'] == (1, 4, 4, 4)
    macs = 64 * 4 * 2 * 9 + 16 * 4 * 4 * 9 + 16 * 4 * 2
    assert s.rows[0]['mmacs'] == pytest.approx(macs / 1e6)
    bn = 3 * 2 * 4                           # three batch norms of 4 channels: weight and bias
    assert s.params == 4 * 2 * 9 + 4 * 4 * 9 + 4 * 2 + bn


def test_grouped_convolution_and_a_bare_module():
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)
    s = nb_08.summary(conv, torch.randn(1, 4, 5, 5))              # not a Sequential: one row
    assert len(s.rows) == 1 and s.rows[0]['layer'] == 'Conv2d'
    assert s.rows[0]['mmacs'] == pytest.approx(25 * 8 * 2 * 9 / 1e6)


def test_model_state_is_left_alone():
    model = nb_08.resnet((4, 8))
    model.train()
    before = [b.clone() for b in model.buffers()]
    nb_08.summary(model, torch.randn(4, 1, 12, 12))
    assert model.training
    # one image in eval mode: the batch-norm statistics are unchanged
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    assert not any(m._forward_hooks for m in model.modules())              # hooks removed


def test_table_has_totals():
    text = repr(nb_08.summary(nb_08.resnet((4, 8)), torch.randn(1, 1, 12, 12)))
    assert 'ResBlock' in text and 'total' in text.splitlines()[-1]


def test_summary_of_a_learner_uses_its_model_and_a_validation_batch():
    x, y = torch.randn(6, 1, 12, 12), torch.randint(0, 10, (6,))
    dls = nb_08.DataLoaders.from_dsets(nb_08.Dataset(x, y), nb_08.Dataset(x, y), bs=3)
    model = nb_08.resnet((4, 8))
    learn = nb_08.Learner(model, dls)
    s = nb_08.summary(learn)
    assert s.rows[0]['output'] == (1, 4, 12, 12) and s.rows[1]['output'] == (1, 8, 6, 6)
    assert s.params == nb_08.summary(model, x).params
    with pytest.raises(ValueError, match='pass a batch'): nb_08.summary(model)


def test_summary_names_its_column_macs_not_flops():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nb_08.GlobalAvgPool(), nn.Linear(4, 2))
    s = nb_08.summary(model, torch.zeros(1, 1, 8, 8))
    text = repr(s)
    assert 'MMACs' in text and 'FLOP' not in text       # multiply-adds, not floating-point ops
    assert s.mmacs == pytest.approx((8 * 8 * 4 * 9 + 4 * 2) / 1e6)


def test_nb08_imports_only_what_it_uses():
    import ast
    from pathlib import Path
    tree = ast.parse(Path(nb_08.__file__).read_text(encoding='utf-8'))
    imported = {(a.asname or a.name).split('.')[0] for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names} - {'*'}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported <= used, f"unused imports in exp/nb_08.py: {sorted(imported - used)}"
