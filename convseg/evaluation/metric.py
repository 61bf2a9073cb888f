"""mmseg's IoUMetric plus result files and prediction PNGs in official ids."""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from PIL import Image

from ..fileio import atomic_write
from .confusion import confusion_counts, dense_confusion, write_confusion
from .results import write_results


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """``IoUMetric`` that can also write its results and the predictions.

    The metrics and the logged per-class table are mmseg's. In addition:

    Args:
        result_prefix: when set, the per-class IoU and accuracy and the summary
            are written to ``{result_prefix}_metrics.json`` and
            ``{result_prefix}_per_class.csv`` (see
            :func:`convseg.evaluation.write_results`).
        out_dir: when set, each prediction is written to
            ``{out_dir}/{image file name without extension}.png`` (uint8, the
            image's H x W) in the dataset's own label ids.
        label_ids: the official id of each class index, e.g. Cityscapes'
            labelIds for its 19 trainIds. ``None`` writes the class index, plus
            1 for datasets loaded with ``reduce_zero_label`` (ADE20K's 0..150,
            0 being the ignored 'other').
        confusion_prefix: when set, the confusion matrix of the same pass is
            written to ``{confusion_prefix}_confusion.csv`` and ``.png`` (see
            :mod:`convseg.evaluation.confusion`).
        **kwargs: ``IoUMetric``'s arguments (``iou_metrics``,
            ``ignore_index``, ...).
    """

    def __init__(self,
                 result_prefix: str | None = None,
                 out_dir: str | None = None,
                 label_ids: Sequence[int] | None = None,
                 confusion_prefix: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.confusion_prefix = confusion_prefix
        self.result_prefix = result_prefix
        self.out_dir = out_dir
        self.label_ids = None
        if label_ids is not None:
            self.label_ids = np.asarray(label_ids, dtype=np.int64)
            if self.label_ids.min() < 0 or self.label_ids.max() > 255:
                raise ValueError(
                    f'label_ids must be in 0..255 to fit an 8-bit PNG, got '
                    f'{list(label_ids)}.')
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Accumulate areas as ``IoUMetric`` does; PNGs if ``out_dir``."""
        super().process(data_batch, data_samples)
        if self.confusion_prefix is not None and not self.format_only:
            # each sample's areas gain its confusion cells (results are
            # gathered across ranks as they are)
            num_classes = len(self.dataset_meta['classes'])
            first = len(self.results) - len(data_samples)
            for i, sample in enumerate(data_samples):
                pred = sample['pred_sem_seg']['data'].squeeze()
                label = sample['gt_sem_seg']['data'].squeeze().to(pred)
                self.results[first + i] = (*self.results[first + i],
                                           confusion_counts(
                                               pred, label, num_classes,
                                               self.ignore_index))
        if self.out_dir is None:
            return
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze(0).cpu().numpy()
            name = osp.splitext(osp.basename(sample['img_path']))[0] + '.png'
            ids = self._official_ids(pred, sample.get('reduce_zero_label',
                                                      False))
            with atomic_write(osp.join(self.out_dir, name)) as tmp:
                Image.fromarray(ids.astype(np.uint8)).save(tmp, format='PNG')

    def _official_ids(self, pred: np.ndarray,
                      reduce_zero_label: bool) -> np.ndarray:
        if self.label_ids is None:
            return pred + 1 if reduce_zero_label else pred
        num_classes = len(self.dataset_meta['classes'])
        if len(self.label_ids) != num_classes:
            raise ValueError(
                f'PerClassIoUMetric has {len(self.label_ids)} label_ids but '
                f'the dataset has {num_classes} classes; give one official '
                'id per class.')
        return self.label_ids[pred]

    def compute_metrics(self, results: list) -> dict[str, float]:
        """mmseg's summary (aAcc, mIoU, ...); writes the files if asked."""
        if self.confusion_prefix is not None and results:
            classes = self.dataset_meta['classes']
            matrix = dense_confusion([r[4] for r in results], len(classes))
            results = [r[:4] for r in results]
            paths = write_confusion(self.confusion_prefix, classes, matrix)
            print_log(f'confusion matrix written to {paths[0]} and '
                      f'{paths[1]}', logger='current')
        summary = super().compute_metrics(results)
        if self.result_prefix is None or not results:
            return summary
        totals = [sum(column) for column in zip(*results)]
        per_class = self.total_area_to_metrics(*totals, ['mIoU'],
                                               self.nan_to_num, self.beta)
        paths = write_results(
            self.result_prefix, summary, self.dataset_meta['classes'],
            np.asarray(per_class['IoU'], dtype=np.float64) * 100,
            np.asarray(per_class['Acc'], dtype=np.float64) * 100)
        print_log(f'results written to {paths[0]} and {paths[1]}',
                  logger='current')
        return summary
