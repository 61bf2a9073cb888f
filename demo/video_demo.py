"""Segment every frame of a video and write the overlaid video.

The output keeps the input's frame rate and frame size (no legend, so nothing
is added around the frames). The size is that of the first decoded frame,
not the container's claim (rotation metadata can make them differ, and
OpenCV's writer silently drops frames of another size); a later frame of
another size is resized to it. The written video is read back and its frame
count compared with the frames read: a difference is reported and the exit
code is 1. The container follows OUT_VIDEO's suffix:
``.mp4`` is written with the MPEG-4 Part 2 codec ('mp4v') and ``.avi`` with
Motion-JPEG ('MJPG'), both available in the opencv-python wheels.

    python demo/video_demo.py clip.mp4 CONFIG CHECKPOINT --out clip_seg.mp4
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from mmengine.utils import ProgressBar

from convseg.apis import inference_labels
from convseg.cli import add_model_arguments, model_from_args, run_tool
from convseg.fileio import finish_atomic_write, temporary_path
from convseg.visualization import PALETTE_NAMES, overlay, resolve_palette

FOURCC = {'.mp4': 'mp4v', '.avi': 'MJPG'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('input', help='input video file')
    add_model_arguments(parser)
    parser.add_argument('--out', required=True,
                        help=f'output video ({" or ".join(FOURCC)})')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='weight of the class colour in the blend (0..1)')
    parser.add_argument('--palette', choices=PALETTE_NAMES,
                        help="colours to draw with (default: the model's)")
    parser.add_argument('--batch-size', type=int, default=4,
                        help='frames segmented together')
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Run the demo on parsed arguments; returns the exit code."""
    out = Path(args.out)
    if out.suffix.lower() not in FOURCC:
        print(f'--out {out}: the suffix must be one of {", ".join(FOURCC)}',
              file=sys.stderr)
        return 1
    capture = cv2.VideoCapture(args.input)
    if not capture.isOpened():
        print(f'cannot open video {args.input} (missing, corrupt or a format '
              f'OpenCV does not read)', file=sys.stderr)
        return 1
    fps = capture.get(cv2.CAP_PROP_FPS)
    total = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    if not fps > 0:
        print(f'{args.input} does not state its frame rate; writing 25 fps',
              file=sys.stderr)
        fps = 25.0

    model = model_from_args(args)
    classes = model.dataset_meta['classes']
    palette = resolve_palette(args.palette, model.dataset_meta)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(temporary_path(out, keep_suffix=True))
    codec = FOURCC[out.suffix.lower()]
    ok, frame = capture.read()
    if not ok:
        capture.release()
        print(f'no frames could be read from {args.input}', file=sys.stderr)
        return 1
    size = (frame.shape[1], frame.shape[0])
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*codec),
                             fps, size)
    if not writer.isOpened():
        capture.release()
        print(f'cannot write video {out} with codec {codec}', file=sys.stderr)
        return 1

    bar = ProgressBar(total)
    frames = resized = 0
    start = time.perf_counter()

    def flush(batch: list[np.ndarray]) -> None:
        for frame, labels in zip(batch, inference_labels(model, batch)):
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            drawn = overlay(rgb, labels, palette, classes,
                            opacity=args.opacity, legend=False)
            writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
            bar.update()
        batch.clear()

    batch: list[np.ndarray] = []
    try:
        while ok:
            if (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                resized += 1
            batch.append(frame)
            frames += 1
            if len(batch) == args.batch_size:
                flush(batch)
            ok, frame = capture.read()
        if batch:
            flush(batch)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
        writer.release()
    elapsed = time.perf_counter() - start
    finish_atomic_write(partial, out)
    written = count_frames(out)
    print(f'\n{frames} frames in {elapsed:.1f} s: '
          f'{frames / elapsed:.2f} frames per second; wrote {out} '
          f'({size[0]}x{size[1]}, {fps:g} fps)')
    if resized:
        print(f'{resized} frame(s) differed in size from the first '
              f'({size[0]}x{size[1]}) and were resized to it',
              file=sys.stderr)
    if written != frames:
        print(f'{out} holds {written} frames but {frames} were read from '
              f'{args.input}: the writer dropped {frames - written}',
              file=sys.stderr)
        return 1
    return 0


def count_frames(path: Path) -> int:
    """Frames in a video file, counted by demuxing them (no decoding)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code (1 with a message on errors)."""
    args = parse_args(argv)
    return run_tool(run, args, unsafe_load=args.unsafe_load)


if __name__ == '__main__':
    sys.exit(main())
