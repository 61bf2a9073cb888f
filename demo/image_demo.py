"""Segment an image or a folder of images; write overlays and label PNGs.

For each input NAME.ext it writes OUT_DIR/NAME_overlay.png (the image with the
predicted classes blended in and a legend) and OUT_DIR/NAME_mask.png (a
palette PNG whose pixel values are the class ids). Images in sub-folders keep
their relative path. A file that cannot be read is reported and skipped; the
exit code is 1 if any failed.

    python demo/image_demo.py photo.jpg CONFIG CHECKPOINT --out-dir out/
    python demo/image_demo.py photos/ CONFIG CHECKPOINT --out-dir out/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from mmengine.utils import ProgressBar
from PIL import Image

from convseg.apis import inference_labels
from convseg.imageio import IMAGE_SUFFIXES, ImageReadError, read_image
from convseg.cli import add_model_arguments, model_from_args, run_tool
from convseg.fileio import atomic_write
from convseg.visualization import (PALETTE_NAMES, mask_image, overlay,
                                   resolve_palette)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('input', help='an image file or a folder of images')
    add_model_arguments(parser)
    parser.add_argument('--out-dir', default='work_dirs/demo',
                        help='where to write the outputs')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='weight of the class colour in the blend (0..1)')
    parser.add_argument('--no-legend', action='store_true',
                        help='do not append the legend strip')
    parser.add_argument('--with-labels', action='store_true',
                        help='write class names on the regions')
    parser.add_argument('--palette', choices=PALETTE_NAMES,
                        help="colours to draw with (default: the model's)")
    return parser.parse_args(argv)


def list_images(source: Path) -> list[Path]:
    """``source`` itself, or the image files under the folder, sorted."""
    if source.is_dir():
        return sorted(p for p in source.rglob('*')
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not source.exists():
        raise FileNotFoundError(f'input {source} does not exist')
    return [source]


def output_names(paths: list[Path], root: Path) -> dict[Path, Path]:
    """Output name (relative path without suffix) of each input.

    Two inputs that differ only by suffix (a.jpg, a.png) keep the suffix in
    their names (a.jpg, a.png) so neither overwrites the other.
    """
    stems = [p.relative_to(root).with_suffix('') for p in paths]
    names = {}
    for path, stem in zip(paths, stems):
        clash = stems.count(stem) > 1
        names[path] = stem.with_name(path.name) if clash else stem
    return names


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write ``image`` as PNG to ``path`` through a temporary file."""
    with atomic_write(path) as tmp:
        image.save(tmp, format='PNG')


def run(args: argparse.Namespace) -> int:
    """Run the demo on parsed arguments; returns the exit code."""
    source = Path(args.input)
    paths = list_images(source)
    if not paths:
        print(f'no image files ({", ".join(IMAGE_SUFFIXES)}) in {source}',
              file=sys.stderr)
        return 1
    model = model_from_args(args)
    classes = model.dataset_meta['classes']
    palette = resolve_palette(args.palette, model.dataset_meta)
    out_dir = Path(args.out_dir)
    names = output_names(paths, source if source.is_dir() else source.parent)
    bar = ProgressBar(len(paths)) if source.is_dir() else None
    failed = []
    for path in paths:
        try:
            image = read_image(path)
        except (ImageReadError, OSError) as err:
            failed.append(path)
            print(f'\nskipped {path}: {err}', file=sys.stderr)
        else:
            labels = inference_labels(model, image)
            drawn = overlay(np.ascontiguousarray(image[:, :, ::-1]), labels,
                            palette, classes, opacity=args.opacity,
                            legend=not args.no_legend,
                            with_labels=args.with_labels)
            name = out_dir / names[path]
            save_atomic(Image.fromarray(drawn),
                        name.with_name(name.name + '_overlay.png'))
            save_atomic(mask_image(labels, palette),
                        name.with_name(name.name + '_mask.png'))
        if bar is not None:
            bar.update()
    done = len(paths) - len(failed)
    print(f'\nwrote overlays and masks of {done} image(s) to {out_dir}')
    if failed:
        print(f'{len(failed)} file(s) could not be read: '
              f'{", ".join(str(p) for p in failed)}', file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code (1 with a message on errors)."""
    args = parse_args(argv)
    return run_tool(run, args, unsafe_load=args.unsafe_load)


if __name__ == '__main__':
    sys.exit(main())
