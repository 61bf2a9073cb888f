"""Result files of an evaluation: a JSON summary and a per-class CSV."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import os.path as osp
import tempfile
from typing import Mapping, Optional, Sequence, Tuple


def _number(value: float) -> Optional[float]:
    """A float for JSON, or None for NaN (a class with no pixels anywhere)."""
    value = float(value)
    return None if math.isnan(value) else value


def _write_atomically(path: str, text: str) -> None:
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', dir=folder)
    try:
        with os.fdopen(fd, 'w', newline='') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_results(prefix: str, summary: Mapping[str, float],
                  classes: Sequence[str], iou: Sequence[float],
                  acc: Sequence[float]) -> Tuple[str, str]:
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
    _write_atomically(json_path, json.dumps(payload, indent=2) + '\n')

    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=['class', 'IoU', 'Acc'])
    writer.writeheader()
    writer.writerows([{k: ('' if v is None else v) for k, v in row.items()}
                      for row in rows])
    _write_atomically(csv_path, table.getvalue())
    return json_path, csv_path
