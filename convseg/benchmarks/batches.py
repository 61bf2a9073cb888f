"""Random input batches for benchmarks, and the agreement of two outputs."""
from __future__ import annotations

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


def random_batch(shape: list[int],
                 batch: int,
                 num_classes: int,
                 seed: int = 0) -> dict:
    """Random uint8 images (3, H, W) with random labels, as a dataloader gives.

    ``dict(inputs=[...], data_samples=[SegDataSample, ...])``, before the
    model's data preprocessor.
    """
    gen = torch.Generator().manual_seed(seed)
    height, width = shape
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(0,
                          256, (3, height, width),
                          dtype=torch.uint8,
                          generator=gen))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width),
                                             pad_shape=(height, width),
                                             padding_size=[0, 0, 0, 0],
                                             flip=False))
        labels = torch.randint(0,
                               num_classes, (1, height, width),
                               generator=gen)
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def agreement(plain: torch.Tensor, fast: torch.Tensor) -> dict[str, float]:
    """Equal-argmax pixel fraction and max |fast - plain| / max |plain|."""
    plain, fast = plain.float().cpu(), fast.float().cpu()
    equal = (plain.argmax(1) == fast.argmax(1)).float().mean().item()
    rel = ((fast - plain).abs().max() / plain.abs().max()).item()
    return dict(argmax_equal=equal, max_rel_logit_diff=rel)
