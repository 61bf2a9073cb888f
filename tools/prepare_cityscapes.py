"""Write Cityscapes ``*_gtFine_labelTrainIds.png`` from the polygon JSON files.

    python tools/prepare_cityscapes.py data/cityscapes [--nproc 8]

Cityscapes ships its fine annotations as polygons
(``gtFine/<split>/<city>/*_gtFine_polygons.json``); training uses label images
in the 19 train ids (255 = ignore). Each JSON file is rasterised with the
official ``cityscapesscripts`` code (``json2labelImg(..., 'trainIds')``) into
a PNG beside it. Every PNG is written under a temporary name and renamed when
complete, so an interrupted run leaves no truncated label file behind.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from multiprocessing import Pool

from convseg.fileio import atomic_write

EXPECTED_LAYOUT = """\
expected layout:
  DATA_ROOT/leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png
  DATA_ROOT/gtFine/{train,val,test}/<city>/<name>_gtFine_polygons.json
  (<name> = <city>_<sequence>_<frame>, e.g. aachen_000000_000019)
Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from
https://www.cityscapes-dataset.com/downloads/ and unzip both into DATA_ROOT."""

POLYGONS_SUFFIX = '_gtFine_polygons.json'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Rasterise Cityscapes gtFine polygons into '
        '*_gtFine_labelTrainIds.png with cityscapesscripts.')
    parser.add_argument('data_root', metavar='DATA_ROOT',
                        help='the cityscapes folder (holding gtFine/)')
    parser.add_argument('--gt-dir', default='gtFine',
                        help='annotation folder inside DATA_ROOT')
    parser.add_argument('--nproc', type=int, default=1,
                        help='number of worker processes')
    return parser.parse_args()


def find_polygon_files(gt_dir: str) -> list[str]:
    """All ``*_gtFine_polygons.json`` under ``gt_dir``, sorted."""
    found = []
    for folder, _, files in os.walk(gt_dir):
        found += [osp.join(folder, f) for f in files
                  if f.endswith(POLYGONS_SUFFIX)]
    return sorted(found)


def check_annotation(json_file: str) -> str | None:
    """Why ``json_file`` cannot be rasterised, or None when it can.

    Checks the keys the official rasteriser reads and that every label is in
    the Cityscapes label definitions, with the same fallback it applies (a
    trailing 'group', as in 'cargroup', falls back to the base label); the
    official code would otherwise exit the process on the first unknown label.
    """
    from cityscapesscripts.helpers.labels import name2label

    try:
        with open(json_file) as f:
            annotation = json.load(f)
    except ValueError as e:
        return f'{json_file} is not valid JSON: {e}'
    missing = [k for k in ('imgHeight', 'imgWidth', 'objects')
               if k not in annotation]
    if missing:
        return (f'{json_file} lacks the key(s) {missing} of a polygon '
                'annotation')
    unknown = set()
    for i, obj in enumerate(annotation['objects']):
        if 'label' not in obj or 'polygon' not in obj:
            return f'{json_file}: objects[{i}] needs "label" and "polygon"'
        label = str(obj['label'])
        if label not in name2label and label.endswith('group'):
            label = label[:-len('group')]
        if label not in name2label:
            unknown.add(str(obj['label']))
    if unknown:
        return (f'{json_file}: labels not in the Cityscapes label '
                f'definitions: {sorted(unknown)}')
    return None


def convert(json_file: str) -> str | None:
    """Write the labelTrainIds PNG of a JSON file; return an error or None."""
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    problem = check_annotation(json_file)
    if problem is not None:
        return problem
    out = json_file[:-len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX
    try:
        with atomic_write(out, keep_suffix=True) as tmp:
            json2labelImg(json_file, tmp, 'trainIds')
    except Exception as e:  # reported per file, the others still convert
        return f'{json_file}: {type(e).__name__}: {e}'
    return None


def main() -> int:
    args = parse_args()
    if args.nproc < 1:
        sys.exit(f'error: --nproc must be >= 1, got {args.nproc}')
    gt_dir = osp.join(args.data_root, args.gt_dir)
    if not osp.isdir(gt_dir):
        sys.exit(f'error: {gt_dir} does not exist; DATA_ROOT must be the '
                 f'cityscapes folder.\n{EXPECTED_LAYOUT}')
    json_files = find_polygon_files(gt_dir)
    if not json_files:
        sys.exit(f'error: no *{POLYGONS_SUFFIX} files under {gt_dir}.\n'
                 f'{EXPECTED_LAYOUT}')

    print(f'converting {len(json_files)} polygon files under {gt_dir} '
          f'with {args.nproc} process(es)')
    if args.nproc > 1:
        with Pool(args.nproc) as pool:
            errors = pool.map(convert, json_files, chunksize=8)
    else:
        errors = [convert(f) for f in json_files]
    errors = [e for e in errors if e is not None]
    written = len(json_files) - len(errors)
    print(f'wrote {written} *{TRAIN_IDS_SUFFIX} files under {gt_dir}')
    if errors:
        print(f'{len(errors)} file(s) failed:', file=sys.stderr)
        for error in errors:
            print(f'  {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
