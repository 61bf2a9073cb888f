"""Time and peak memory of converting a COCO export (a benchmark, not a test).

    python tools/benchmark_convert.py [--images 2000] [--size 512]
        [--polygons 10] [--workers N] [--work-dir DIR]

Writes a COCO export of generated images (SIZE x SIZE JPEGs, about POLYGONS
random polygons each, over 3 categories) into a temporary folder (or
--work-dir), converts it with convseg.datasets.converters.convert on
--workers processes (default: every usable core), and prints the wall time,
images per second and the peak resident memory of this process and of its
largest worker.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import json
import os
import os.path as osp
import resource
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from convseg.datasets.converters import convert
from convseg.datasets.converters.core import usable_cores
from convseg.hardware import cpu_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=2000)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--polygons', type=int, default=10)
    parser.add_argument('--workers', type=int, default=usable_cores())
    parser.add_argument('--work-dir', help='where the export and the '
                        'dataset go (default: a temporary folder)')
    return parser.parse_args()


def write_export(root: str, count: int, size: int, polygons: int) -> str:
    """The generated COCO export; returns the JSON's path."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    images, annotations = [], []
    for i in range(count):
        name = f'img_{i:05d}.jpg'
        Image.fromarray(np.roll(noise, i, axis=1)).save(
            osp.join(root, name), quality=90)
        images.append({'id': i, 'file_name': name, 'width': size,
                       'height': size})
        for _ in range(polygons):
            centre = rng.uniform(0, size, 2)
            angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
            radius = rng.uniform(10, size / 5, 12)
            pts = np.stack([centre[0] + radius * np.cos(angles),
                            centre[1] + radius * np.sin(angles)], 1)
            annotations.append({
                'id': len(annotations), 'image_id': i,
                'category_id': int(rng.integers(1, 4)),
                'segmentation': [pts.round(2).ravel().tolist()],
                'area': 0.0, 'bbox': [0, 0, 0, 0], 'iscrowd': 0})
    path = osp.join(root, 'instances_default.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'images': images, 'annotations': annotations,
                   'categories': [{'id': k, 'name': f'class_{k}'}
                                  for k in (1, 2, 3)]}, f)
    return path


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or tmp
        export = osp.join(root, 'export')
        os.makedirs(export, exist_ok=True)
        start = time.perf_counter()
        path = write_export(export, args.images, args.size, args.polygons)
        print(f'export written in {time.perf_counter() - start:.1f} s')
        start = time.perf_counter()
        summary = convert('coco', [path], osp.join(root, 'dataset'),
                          workers=args.workers)
        seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f'CPU: {cpu_model()}, {usable_cores()} usable cores, '
          f'{args.workers} workers')
    print(f"converted {args.images} images of {args.size} x {args.size} with "
          f"~{args.polygons} polygons each: {seconds:.1f} s, "
          f"{args.images / seconds:.1f} images/s; "
          f"{summary['labels written']} labels written")
    print(f'peak memory: main process {own:.0f} MiB, largest worker '
          f'{workers:.0f} MiB')


if __name__ == '__main__':
    sys.exit(main(parse_args()))
