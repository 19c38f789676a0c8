"""`bench/fashion.py` on a few real images: flags, the JSON it writes, and each epoch's progress."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))
import fashion  # noqa: E402

pytestmark = pytest.mark.nb08


def test_both_runs_write_one_json(tmp_path, capsys):
    out = tmp_path / 'f.json'
    args = ['--limit', '256', '--bs', '64', '--width', '0.25', '--epochs', '2', '--aug_epochs', '1',
            '--device', 'cpu', '--threads', '1', '--out', str(out), '--note', 'shared machine']
    res = fashion.main(args)
    runs = json.loads(out.read_text(encoding='utf-8'))['runs']
    assert set(runs) == set(res) == {'resnet', 'augment'}
    r, a = runs['resnet'], runs['augment']
    assert r['complete'] and r['epochs_done'] == 2 and len(r['history']) == 2
    assert r['nfs'] == [4, 8, 16, 32, 64, 128] and r['device'] == 'cpu' and r['threads'] == 1
    assert 0 <= r['test_accuracy'] <= 1 and r['images_per_second'] > 0 and 'torch' in r
    assert 'test_accuracy_tta' in a and 'test_accuracy_tta' not in r
    assert a['crop_fill'].startswith('image minimum') and 'crop_fill' not in r
    assert r['note'] == a['note'] == 'shared machine' and len(a['loadavg_end']) == 3
    assert 'images/s' in capsys.readouterr().out


def test_a_second_invocation_keeps_the_other_run(tmp_path):
    out = tmp_path / 'f.json'
    common = ['--limit', '128', '--bs', '64', '--width', '0.25', '--device', 'cpu',
              '--out', str(out)]
    fashion.main(['--runs', 'augment', '--aug_epochs', '1', *common])
    fashion.main(['--runs', 'resnet', '--epochs', '1', *common])
    assert set(json.loads(out.read_text(encoding='utf-8'))['runs']) == {'resnet', 'augment'}


def test_progress_is_saved_after_each_epoch(tmp_path, monkeypatch):
    out, seen, train = tmp_path / 'f.json', [], fashion.train

    def spy(*a, save=None, **k):
        def save_and_look(part):
            save(part)
            seen.append(json.loads(out.read_text(encoding='utf-8'))['runs']['resnet'])
        return train(*a, save=save_and_look, **k)
    monkeypatch.setattr(fashion, 'train', spy)
    fashion.main(['--runs', 'resnet', '--epochs', '2', '--limit', '128', '--bs', '64',
                  '--width', '0.25', '--device', 'cpu', '--out', str(out)])
    assert [(s['epochs_done'], s['complete']) for s in seen] == [(1, False), (2, False)]
    assert json.loads(out.read_text(encoding='utf-8'))['runs']['resnet']['complete']


def test_unknown_run_is_refused():
    with pytest.raises(SystemExit): fashion.parse_args(['--runs', 'resnet,bogus'])
