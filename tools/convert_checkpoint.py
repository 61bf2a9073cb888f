"""Convert a ConvNeXt or UPerNet-ConvNeXt checkpoint to convseg's format.

    python tools/convert_checkpoint.py SRC DST \
        [--from auto|facebook|openmmlab|timm|hf] [--force] [--unsafe-load]

SRC is a checkpoint file (.pth/.bin/.safetensors), a URL or a HuggingFace
model directory. DST gets ``{'meta': ..., 'state_dict': ...}`` with convseg's
(the official) key names: a backbone checkpoint without its classifier,
loadable through ``init_cfg=dict(type='Pretrained', checkpoint=DST)``; a whole
segmentation checkpoint with its ``backbone.``/``decode_head.``/
``auxiliary_head.`` keys, loadable by tools/test.py. The source meta is kept,
with class names and palette normalised into ``meta['dataset_meta']``. DST
loads weights-only (no pickled objects).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import torch

import convseg  # noqa: F401  (installs the checkpoint-loading shims)
from convseg.checkpoint_reading import (extract_state_dict,
                                        load_checkpoint_file, read_checkpoint)
from convseg.cli import run_tool
from convseg.fileio import atomic_write
from convseg.models.checkpoint_loading import dataset_meta_from, infer_arch
from convseg.models.convnext_keymaps import (FAMILIES, convert,
                                             is_segmentor_state_dict)

PLAIN = (str, int, float, bool, type(None), torch.Tensor)
_DROP = object()


def plain_meta(value: Any, where: str, dropped: list[str]) -> Any:
    """``value`` with numpy types made Python ones and other objects left out.

    What is left out is named in ``dropped``, so that DST loads weights-only.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            kept = plain_meta(item, f'{where}.{key}', dropped)
            if kept is not _DROP:
                out[key] = kept
        return out
    if isinstance(value, (list, tuple)):
        items = [plain_meta(v, f'{where}[{i}]', dropped)
                 for i, v in enumerate(value)]
        items = [v for v in items if v is not _DROP]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, PLAIN):
        return value
    dropped.append(f'{where} ({type(value).__name__})')
    return _DROP


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of this tool."""
    parser = argparse.ArgumentParser(
        description='Convert a ConvNeXt / UPerNet-ConvNeXt checkpoint of '
        'any supported family to convseg (official) key names.')
    parser.add_argument('src', help='checkpoint file, URL or HuggingFace '
                        'model directory')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--from', dest='family', default='auto',
                        choices=['auto', *FAMILIES],
                        help='checkpoint family of SRC (default: detect it)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite DST if it exists')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='load SRC with full pickle; only for files you '
                        'trust (a pickle can run code)')
    return parser.parse_args(argv)


def convert_file(args: argparse.Namespace) -> str:
    """Convert ``args.src`` into ``args.dst``; return a one-line report."""
    dst = os.path.abspath(os.path.expanduser(args.dst))
    if os.path.exists(dst) and not args.force:
        raise FileExistsError(
            f'{args.dst} exists; pass --force to overwrite it, or pick '
            'another DST.')
    raw = read_checkpoint(args.src)
    state = extract_state_dict(raw, args.src)
    result = convert(state, args.family, args.src)
    dropped_meta: list[str] = []
    meta = raw.get('meta') if isinstance(raw, dict) else None
    meta = plain_meta(dict(meta or {}), 'meta', dropped_meta)
    dataset_meta = dataset_meta_from(meta)
    meta.pop('CLASSES', None)
    meta.pop('PALETTE', None)
    if dataset_meta is not None:
        meta['dataset_meta'] = dataset_meta
    meta['converted_from'] = {'source': args.src, 'family': result.family}
    state_dict = {k: v.detach().clone().contiguous()
                  for k, v in result.state_dict.items()}

    with atomic_write(dst) as tmp:
        torch.save({'meta': meta, 'state_dict': state_dict}, tmp)
        load_checkpoint_file(tmp, map_location='cpu')

    segmentor = is_segmentor_state_dict(state_dict)
    arch = infer_arch(state_dict, 'backbone.' if segmentor else '')
    lines = [
        f'wrote {args.dst}: {"segmentation" if segmentor else "backbone"} '
        f'checkpoint, family {result.family}, {len(state_dict)} tensors',
        f'  backbone: {arch.describe() if arch else "unknown"}',
        f'  dropped classifier keys: {", ".join(result.dropped) or "none"}',
        f'  kept under their own names (no rule knows them): '
        f'{", ".join(result.unmatched) or "none"}',
    ]
    if dataset_meta is not None:
        lines.append(f'  classes: {len(dataset_meta["classes"])}')
    if dropped_meta:
        lines.append('  meta entries left out (not plain data): '
                     + ', '.join(dropped_meta))
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the tool; return the exit status (1 with a message on errors)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_tool(lambda: print(convert_file(args)),
                    unsafe_load=args.unsafe_load)


if __name__ == '__main__':
    sys.exit(main())
