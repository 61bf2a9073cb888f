"""Old home of convseg's checkpoint code, kept for one release.

Its names moved, and reading them from here warns with a
``DeprecationWarning`` that names the new module:

* key maps between checkpoint families (:data:`FAMILIES`, :func:`convert`,
  :func:`detect_family`...): :mod:`convseg.models.convnext_keymaps`;
* reading files, URLs and HuggingFace folders (:func:`read_checkpoint`,
  :func:`extract_state_dict`): :mod:`convseg.checkpoint_reading`;
* fit checks and loaders (:func:`load_backbone_weights`,
  :func:`load_segmentor_checkpoint`, :func:`infer_arch`...):
  :mod:`convseg.models.checkpoint_loading`;
* the error classes: :mod:`convseg.errors`.
"""
from __future__ import annotations

from ..deprecation import moved_names

_NEW_HOMES = {
    'convseg.models.convnext_keymaps': (
        'StateDict', 'HEAD_PREFIXES', 'WRAPPER_PREFIXES', 'Family', 'FITS',
        'FAMILIES', 'Conversion', 'is_segmentor_state_dict', 'detect_family',
        'convert', 'convert_state_dict'),
    'convseg.checkpoint_reading': (
        'HF_WEIGHT_FILES', 'read_checkpoint', 'extract_state_dict'),
    'convseg.models.checkpoint_loading': (
        'Checkpoint', 'ArchSignature', 'infer_arch', 'check_fits',
        'dataset_meta_from', 'load_backbone_weights', 'check_num_classes',
        'load_segmentor_checkpoint'),
    'convseg.errors': ('CheckpointFormatError', 'CheckpointMismatchError'),
}

__getattr__ = moved_names(__name__, {
    name: module for module, names in _NEW_HOMES.items() for name in names})
