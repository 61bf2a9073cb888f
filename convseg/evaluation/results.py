"""Result files of an evaluation: a JSON summary and a per-class CSV."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence

from ..fileio import atomic_write_text


def _number(value: float) -> float | None:
    """A float for JSON, or None for NaN (a class with no pixels anywhere)."""
    value = float(value)
    return None if math.isnan(value) else value


def write_results(prefix: str, summary: Mapping[str, float],
                  classes: Sequence[str], iou: Sequence[float],
                  acc: Sequence[float]) -> tuple[str, str]:
    """Write ``{prefix}_metrics.json`` and ``{prefix}_per_class.csv``.

    ``summary`` holds the summary metrics (e.g. aAcc, mIoU, mAcc); ``iou`` and
    ``acc`` hold one value per class of ``classes``, all in percent. The JSON
    has the summary keys and ``per_class``, a list of ``{"class", "IoU",
    "Acc"}``; the CSV has the columns ``class,IoU,Acc``. NaN (a class absent
    from both the ground truth and the predictions) is ``null`` in the JSON
    and an empty cell in the CSV. Each file is replaced atomically. Returns
    the two paths.
    """
    if not len(classes) == len(iou) == len(acc):
        raise ValueError(
            f'write_results needs one IoU and one Acc per class; got '
            f'{len(classes)} classes, {len(iou)} IoU and {len(acc)} Acc '
            'values.')
    rows = [dict(zip(('class', 'IoU', 'Acc'), (name, _number(i), _number(a))))
            for name, i, a in zip(classes, iou, acc)]
    # the summary values are mmseg's, rounded to 2 decimals in float32
    payload = {key: _number(round(float(value), 2))
               for key, value in summary.items()}
    payload['per_class'] = rows

    json_path = f'{prefix}_metrics.json'
    csv_path = f'{prefix}_per_class.csv'
    atomic_write_text(json.dumps(payload, indent=2) + '\n', json_path)

    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=['class', 'IoU', 'Acc'])
    writer.writeheader()
    writer.writerows([{k: ('' if v is None else v) for k, v in row.items()}
                      for row in rows])
    atomic_write_text(table.getvalue(), csv_path)
    return json_path, csv_path
