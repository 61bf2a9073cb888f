"""CheckpointedUPerHead: the FPN fusion recomputed in backward gives
UPerHead's loss, gradients and BatchNorm running statistics."""
from __future__ import annotations

import copy

import convseg  # noqa: F401  (registers the head)
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope


def build(tiny_config, **head: object) -> torch.nn.Module:
    from mmseg.registry import MODELS
    cfg = Config.fromfile(tiny_config)
    cfg.model.decode_head.update(head)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def step(model: torch.nn.Module) -> tuple[float, dict]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    features = model.extract_feat(images)
    torch.manual_seed(2)  # the head's dropout draws the same mask
    logits = model.decode_head(features)
    labels = torch.randint(0, 150, (2, 64, 64), generator=gen)
    logits = torch.nn.functional.interpolate(logits, size=(64, 64),
                                             mode='bilinear')
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}


def test_checkpointed_head_equals_uperhead(tiny_config) -> None:
    plain = build(tiny_config)
    checkpointed = build(tiny_config, type='CheckpointedUPerHead',
                         with_cp=True)
    assert type(checkpointed.decode_head).__name__ == 'CheckpointedUPerHead'
    checkpointed.load_state_dict(copy.deepcopy(plain.state_dict()))
    plain.train(), checkpointed.train()
    calls = {id(plain): 0, id(checkpointed): 0}
    for model in (plain, checkpointed):
        model.decode_head.fpn_bottleneck.register_forward_pre_hook(
            lambda *_, key=id(model): calls.__setitem__(key, calls[key] + 1))
    loss, grads = step(plain)
    loss_cp, grads_cp = step(checkpointed)
    # the fusion ran again in the backward pass, and only there
    assert calls == {id(plain): 1, id(checkpointed): 2}
    assert loss_cp == loss
    assert grads_cp.keys() == grads.keys()
    assert any(n.startswith('decode_head.fpn_bottleneck') for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_cp[name], grad, rtol=0, atol=1e-6,
                                   msg=name)
    # the recomputation does not update the running statistics twice
    buffers = dict(plain.named_buffers())
    for name, value in checkpointed.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=0, atol=0,
                                   msg=name)
    assert buffers['decode_head.fpn_bottleneck.bn.num_batches_tracked'] == 1
