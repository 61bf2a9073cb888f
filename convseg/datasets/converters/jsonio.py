"""Reading an export's JSON with errors that name the file and position."""
from __future__ import annotations

import json
from typing import Any

from .core import ConversionError


def read_json(path: str) -> Any:
    """Parse ``path``; malformed JSON raises naming the line and column."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ConversionError(
            f'{path}: not UTF-8 text at byte {err.start}; is it the JSON '
            'export?') from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConversionError(
            f'{path}: malformed JSON at line {err.lineno}, column '
            f'{err.colno}: {err.msg}; export the file again (a truncated '
            'download or copy ends early)') from err


def require(obj: Any, key: str, path: str, where: str) -> Any:
    """``obj[key]``, or an error naming the file, the object and the key."""
    if not isinstance(obj, dict) or key not in obj:
        raise ConversionError(
            f'{path}: {where} has no "{key}" field; is this the right export '
            'format?')
    return obj[key]
