"""tools/prepare_cityscapes.py run as a subprocess on generated Cityscapes."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

import convseg  # noqa: F401
from convseg.datasets import generate_cityscapes

TOOL = 'tools/prepare_cityscapes.py'

# Cityscapes labelId -> trainId for the 19 evaluated classes (from the
# official label definitions); every other id is ignored (255).
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7,
                        21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
                        28: 15, 31: 16, 32: 17, 33: 18}


def label_files(root, suffix):
    return sorted(osp.join(d, f) for d, _, fs in os.walk(root) for f in fs
                  if f.endswith(suffix))


def test_writes_train_ids_equal_to_mapped_label_ids(tmp_path, run_script):
    root = generate_cityscapes(str(tmp_path), num_train=5, num_val=3,
                               seed=4, train_ids=False)
    assert label_files(root, '_gtFine_labelTrainIds.png') == []

    result = run_script(TOOL, root, '--nproc', '2')
    assert result.returncode == 0, result.stderr
    gt_dir = osp.join(root, 'gtFine')
    assert result.stdout.splitlines()[-1] == (
        f'wrote 8 *_gtFine_labelTrainIds.png files under {gt_dir}')

    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    ids = label_files(root, '_gtFine_labelIds.png')
    written = label_files(root, '_gtFine_labelTrainIds.png')
    assert written == [f.replace('_labelIds.png', '_labelTrainIds.png')
                       for f in ids]
    for id_file, train_id_file in zip(ids, written):
        train_ids = Image.open(train_id_file)
        assert (train_ids.mode, train_ids.size) == ('L', (128, 64))
        label_ids = np.asarray(Image.open(id_file))
        np.testing.assert_array_equal(np.asarray(train_ids), lut[label_ids])
    # no temporary files left beside them
    assert len(label_files(gt_dir, '')) == 3 * len(written)


def test_missing_gtfine_names_the_path_and_layout(tmp_path, run_script):
    result = run_script(TOOL, str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (f'error: {tmp_path}/gtFine does not exist; DATA_ROOT '
                        'must be the cityscapes folder.')
    assert lines[1] == 'expected layout:'
    assert 'DATA_ROOT/gtFine/{train,val,test}/<city>/' in lines[3]
    assert 'https://www.cityscapes-dataset.com/downloads/' in result.stderr


def test_gtfine_without_polygons(tmp_path, run_script):
    (tmp_path / 'gtFine' / 'train').mkdir(parents=True)
    result = run_script(TOOL, str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f'error: no *_gtFine_polygons.json files under {tmp_path}/gtFine.')


def test_bad_files_are_reported_and_nothing_is_lost(tmp_path, run_script):
    root = generate_cityscapes(str(tmp_path), num_train=3, num_val=1,
                               train_ids=True)
    gt_dir = osp.join(root, 'gtFine')
    bad_label = osp.join(gt_dir, 'train', 'bochum',
                         'bochum_000000_000019_gtFine_polygons.json')
    with open(bad_label) as f:
        ann = json.load(f)
    ann['objects'][1]['label'] = 'skyy'
    with open(bad_label, 'w') as f:
        json.dump(ann, f)
    broken = osp.join(gt_dir, 'val', 'frankfurt',
                      'frankfurt_000000_000019_gtFine_polygons.json')
    with open(broken, 'w') as f:
        f.write('{"imgHeight": 64')
    before = {f: open(f, 'rb').read()
              for f in label_files(root, '_gtFine_labelTrainIds.png')}

    result = run_script(TOOL, root)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        f'wrote 2 *_gtFine_labelTrainIds.png files under {gt_dir}')
    errors = result.stderr.splitlines()
    assert errors[0] == '2 file(s) failed:'
    assert errors[1].startswith(f'  {bad_label}: labels not in the '
                                "Cityscapes label definitions: ['skyy']")
    assert errors[2].startswith(f'  {broken} is not valid JSON: ')
    # the label images of the two bad files are still the earlier ones
    after = {f: open(f, 'rb').read()
             for f in label_files(root, '_gtFine_labelTrainIds.png')}
    assert after == before
