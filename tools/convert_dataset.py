"""Convert a labelling tool's export to mmseg's layout and a ready config.

    python tools/convert_dataset.py {coco,labelme,cvat,mask} SOURCE... OUT_ROOT
        [--images DIR ...] [--palette FILE] [--classes FILE]
        [--val-fraction 0.1] [--seed 0] [--no-background]
        [--crowd-as-class] [--skip-unknown] [--skip-missing]
        [--line-width 10] [--point-radius 5] [--workers N]

Writes OUT_ROOT/img_dir/{train,val}/, OUT_ROOT/ann_dir/{train,val}/NAME.png
(palette PNGs of class ids, 255 ignored), OUT_ROOT/classes.json and
OUT_ROOT/config.py, which `python tools/train.py OUT_ROOT/config.py` trains.
See docs/own_data_formats.md for each format and option.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import sys

from convseg.cli import run_tool
from convseg.datasets.converters import FORMATS, convert


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a COCO, LabelMe, CVAT or colour-mask export to '
        "mmseg's layout.")
    parser.add_argument('format', choices=FORMATS)
    parser.add_argument(
        'source', nargs='+',
        help='coco: the annotation JSON (several: one per split, "train" / '
        '"val" in the names); labelme: the folder of .json files; cvat: '
        'annotations.xml or a "Segmentation mask 1.1" folder; mask: the '
        'folder of colour masks')
    parser.add_argument('out_root', help='the dataset folder to write')
    parser.add_argument(
        '--images', action='append',
        help="the image folder (coco: default the JSON's folder, once per "
        "JSON if they differ; cvat: default images/ beside the XML)")
    parser.add_argument('--palette',
                        help='mask: labelmap.txt or JSON name -> [R, G, B]')
    parser.add_argument(
        '--classes',
        help='labelme: labels.txt, one class a line, in id order (default: '
        'every label found, sorted)')
    parser.add_argument('--val-fraction', type=float, default=0.1,
                        help='share of images for val where the export has '
                        'no split (default: 0.1)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of that split (default: 0)')
    parser.add_argument('--no-background', action='store_true',
                        help='no class 0 "background": unlabelled pixels '
                        'are ignored (255)')
    parser.add_argument('--crowd-as-class', action='store_true',
                        help='coco: iscrowd regions keep their class '
                        '(default: ignored)')
    parser.add_argument('--skip-unknown', action='store_true',
                        help='leave out annotations of unknown categories '
                        'or labels (counted) instead of stopping')
    parser.add_argument('--skip-missing', action='store_true',
                        help='leave out images that are missing and '
                        'annotations of unlisted images (counted)')
    parser.add_argument('--line-width', type=float, default=10.0,
                        help='width in pixels of lines and polylines '
                        '(default: 10, as LabelMe)')
    parser.add_argument('--point-radius', type=float, default=5.0,
                        help='radius in pixels of points (default: 5)')
    parser.add_argument('--workers', type=int,
                        help='processes writing files (default: all usable '
                        'cores)')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    summary = convert(
        args.format, args.source, args.out_root,
        val_fraction=args.val_fraction, seed=args.seed,
        workers=args.workers, images=args.images, palette=args.palette,
        classes=args.classes, background=not args.no_background,
        crowd_as_class=args.crowd_as_class, skip_unknown=args.skip_unknown,
        skip_missing=args.skip_missing, line_width=args.line_width,
        point_radius=args.point_radius)
    for key, value in summary.items():
        print(f'{key}: {value}')
    print(f'config: {args.out_root}/config.py')


if __name__ == '__main__':
    sys.exit(run_tool(main, parse_args()))
