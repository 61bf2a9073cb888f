"""Catch misspelt model arguments in a config before anything is built.

Python's own error for an unknown keyword names the argument but not the
ones that exist, and it surfaces deep inside the runner. This check reads the
constructor signatures of the model's parts (following ``**kwargs`` up the
class hierarchy, e.g. ``UPerHead`` -> ``BaseDecodeHead``) and names the
wrong key, its place in the config, the accepted arguments and the closest
match.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConvsegError

_PARTS = ('data_preprocessor', 'backbone', 'neck', 'decode_head',
          'auxiliary_head')
_IGNORED = ('type', '_scope_')


class ConfigArgumentError(ConvsegError, TypeError):
    """A config passes an argument that a model part does not accept."""


def accepted_arguments(cls: type) -> list[str] | None:
    """Keyword arguments ``cls(...)`` accepts, or None if it takes any.

    Follows ``**kwargs`` to the ``__init__`` of the base classes, the way
    they are usually forwarded.
    """
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass is object:
            return names
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in params if p.name != 'self' and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _parts(model_cfg: Mapping) -> Iterator[tuple[str, Any]]:
    yield 'model', model_cfg
    for name in _PARTS:
        part = model_cfg.get(name)
        items = part if isinstance(part, (list, tuple)) else [part]
        for i, item in enumerate(items):
            key = f'model.{name}' + (f'[{i}]' if len(items) > 1 else '')
            yield key, item
            loss = item.get('loss_decode') if isinstance(item, Mapping) \
                else None
            losses = loss if isinstance(loss, (list, tuple)) else [loss]
            for j, inner in enumerate(losses):
                yield (f'{key}.loss_decode' + (f'[{j}]' if len(losses) > 1
                                               else '')), inner


def _resolve(kind: Any) -> type | None:
    from mmseg.registry import MODELS

    if isinstance(kind, type):
        return kind
    if isinstance(kind, str):
        return MODELS.get(kind)
    return None


def check_model_config(model_cfg: Mapping) -> None:
    """Raise :class:`ConfigArgumentError` for an unknown model argument.

    Checks ``model`` itself, its data preprocessor, backbone, neck, decode
    and auxiliary heads and their losses. Parts whose type is not registered
    are left to the builder's own error.
    """
    for key, part in _parts(model_cfg):
        if not isinstance(part, Mapping) or 'type' not in part:
            continue
        cls = _resolve(part['type'])
        accepted = accepted_arguments(cls) if cls is not None else None
        if accepted is None:
            continue
        for name in part:
            if name in _IGNORED or name in accepted:
                continue
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ''
            raise ConfigArgumentError(
                f"{key}.{name}: {cls.__name__} has no argument '{name}'."
                f"{hint} It accepts: {', '.join(accepted)}.")


class MissingConfigKeyError(ConvsegError, ValueError):
    """A tool option needs a config key that the config does not set."""


#: what ``tools/test.py --tta`` reads from the config, and what each is
TTA_KEYS = {
    'tta_model': 'the wrapper that merges the views, e.g. '
                 "dict(type='SegTTAModel')",
    'tta_pipeline': 'the test pipeline with a TestTimeAug step that lists '
                    'the views (scales, flips)',
}


def check_tta_config(cfg: Mapping, config: str) -> None:
    """Raise :class:`MissingConfigKeyError` naming the first of
    ``tta_model`` and ``tta_pipeline`` that ``cfg`` (loaded from the file
    ``config``) lacks."""
    for key, what in TTA_KEYS.items():
        if cfg.get(key) is None:
            raise MissingConfigKeyError(
                f'{config} has no {key} ({what}), which --tta needs: add '
                'one (configs/_base_/default_runtime.py and '
                'configs/_base_/datasets/ade20k.py have examples), or test '
                'without --tta.')
