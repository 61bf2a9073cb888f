"""PointwiseFuseUPerHead: mmseg's UPerHead with its FPN levels fused by a 1x1
conv; checked against a stock UPerHead whose 3x3 fusion has only its centre
tap."""
from __future__ import annotations

import torch
from mmseg.models.decode_heads import UPerHead

import convseg  # noqa: F401
from convseg.models import PointwiseFuseUPerHead
from mmseg.registry import MODELS

ARGS = dict(in_channels=[8, 16, 24], in_index=[0, 1, 2], channels=12,
            num_classes=5, pool_scales=(1, 2),
            norm_cfg=dict(type='BN', requires_grad=True))


def test_equals_uperhead_with_a_centre_only_fusion() -> None:
    torch.manual_seed(0)
    head = MODELS.build(dict(type='PointwiseFuseUPerHead', **ARGS)).eval()
    assert type(head) is PointwiseFuseUPerHead
    stock = UPerHead(**ARGS).eval()
    assert set(head.state_dict()) == set(stock.state_dict())
    assert head.fpn_bottleneck.conv.weight.shape == (12, 36, 1, 1)
    assert stock.fpn_bottleneck.conv.weight.shape == (12, 36, 3, 3)
    gen = torch.Generator().manual_seed(1)
    for norm in (m for m in head.modules()
                 if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5, generator=gen)
        norm.running_var.uniform_(0.5, 1.5, generator=gen)
    # every other tensor copied; the 1x1 weight as the 3x3's centre tap
    state = head.state_dict()
    centre = torch.zeros(12, 36, 3, 3)
    centre[:, :, 1, 1] = state['fpn_bottleneck.conv.weight'][:, :, 0, 0]
    stock.load_state_dict(state | {'fpn_bottleneck.conv.weight': centre})
    inputs = [torch.randn(2, c, s, s, generator=gen)
              for c, s in zip(ARGS['in_channels'], (12, 6, 3))]
    with torch.no_grad():
        scores = head(inputs)
        assert scores.shape == (2, 5, 12, 12)
        torch.testing.assert_close(scores, stock(inputs), rtol=1e-5,
                                   atol=1e-6)
        # the outer taps matter to the stock head: the comparison can fail
        stock.load_state_dict(state | {
            'fpn_bottleneck.conv.weight': centre + 0.05})
        assert (stock(inputs) - scores).abs().max() > 1e-2


def test_training_matches_mmseg_fusion_after_the_concatenation() -> None:
    """In training the head convolves each level at its own size and resizes
    the results; mmseg's UPerHead code (resize, concatenate, convolve) run
    on the same module gives the same scores, batch statistics and
    gradients."""
    torch.manual_seed(0)
    head = MODELS.build(dict(type='PointwiseFuseUPerHead', **ARGS))
    twin = MODELS.build(dict(type='PointwiseFuseUPerHead', **ARGS))
    twin.load_state_dict(head.state_dict())
    head.train(), twin.train()
    gen = torch.Generator().manual_seed(2)
    inputs = [torch.randn(3, c, s, s, generator=gen)
              for c, s in zip(ARGS['in_channels'], (16, 8, 4))]
    torch.manual_seed(3)  # the classifier's dropout
    scores = head(inputs)
    torch.manual_seed(3)
    feats = UPerHead._forward_feature(twin, inputs)
    expected = twin.cls_seg(feats)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn(scores.shape, generator=gen)
    (scores * weights).sum().backward()
    (expected * weights).sum().backward()
    for (name, param), twin_param in zip(head.named_parameters(),
                                         twin.parameters()):
        torch.testing.assert_close(param.grad, twin_param.grad, rtol=1e-4,
                                   atol=1e-5, msg=name)
    norm, twin_norm = head.fpn_bottleneck.bn, twin.fpn_bottleneck.bn
    torch.testing.assert_close(norm.running_mean, twin_norm.running_mean)
    torch.testing.assert_close(norm.running_var, twin_norm.running_var)
    assert norm.running_mean.abs().max() > 1e-3  # the batch moved them


def test_a_conv_of_its_own_kind_runs_through_the_concatenation() -> None:
    """A conv_cfg whose conv is not a plain Conv2d (mmcv's weight-standardised
    'ConvWS') must run as that conv: the head then uses mmseg's
    concatenation, and the scores are those of mmseg's code."""
    torch.manual_seed(0)
    args = ARGS | dict(conv_cfg=dict(type='ConvWS'))
    head = MODELS.build(dict(type='PointwiseFuseUPerHead', **args)).eval()
    assert type(head.fpn_bottleneck.conv) is not torch.nn.Conv2d
    gen = torch.Generator().manual_seed(4)
    inputs = [torch.randn(2, c, s, s, generator=gen)
              for c, s in zip(ARGS['in_channels'], (12, 6, 3))]
    with torch.no_grad():
        scores = head(inputs)
        expected = head.cls_seg(UPerHead._forward_feature(head, inputs))
        torch.testing.assert_close(scores, expected, rtol=0, atol=0)
        # a plain conv with the same weight differs: the comparison can fail
        plain = torch.nn.functional.conv2d
        fuse = head.fpn_bottleneck
        assert (fuse.conv(torch.ones(1, 36, 1, 1)) - plain(
            torch.ones(1, 36, 1, 1), fuse.conv.weight,
            fuse.conv.bias)).abs().max() > 1e-3
