"""Tests of the ConvNeXt backbone (convseg.models.convnext)."""
import re

import pytest
import torch
import transformers
from mmengine.config import ConfigDict

import convseg  # noqa: F401  (registers ConvNeXt)
from convseg.models.convnext import ConvNeXt, small_map_depthwise_conv
from mmseg.registry import MODELS

SMALL = dict(depths=(1, 2, 4, 1), dims=(8, 16, 32, 64))

# Widths and depths as published (ConvNeXt and ConvNeXt V2 papers).
PUBLISHED_ARCHS = {
    'atto': ([2, 2, 6, 2], [40, 80, 160, 320]),
    'femto': ([2, 2, 6, 2], [48, 96, 192, 384]),
    'pico': ([2, 2, 6, 2], [64, 128, 256, 512]),
    'nano': ([2, 2, 8, 2], [80, 160, 320, 640]),
    'tiny': ([3, 3, 9, 3], [96, 192, 384, 768]),
    'small': ([3, 3, 27, 3], [96, 192, 384, 768]),
    'base': ([3, 3, 27, 3], [128, 256, 512, 1024]),
    'large': ([3, 3, 27, 3], [192, 384, 768, 1536]),
    'xlarge': ([3, 3, 27, 3], [256, 512, 1024, 2048]),
    'huge': ([3, 3, 27, 3], [352, 704, 1408, 2816]),
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter distinct random values (no ones/zeros left)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


# ---------------------------------------------------------------- shapes
def test_tiny_feature_shapes_at_512():
    model = ConvNeXt(arch='tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 512, 512))
    assert [tuple(o.shape)
            for o in outs] == [(1, 96, 128, 128), (1, 192, 64, 64),
                               (1, 384, 32, 32), (1, 768, 16, 16)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_out_indices_subset_returns_those_stages_only():
    model = ConvNeXt(out_indices=(1, 3), in_channels=1, **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 1, 64, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 4), (2, 64, 2, 1)]
    norms = {
        k.split('.')[0]
        for k in model.state_dict() if k.startswith('norm')
    }
    assert norms == {'norm1', 'norm3'}


@pytest.mark.parametrize('stem_stride, first', [(4, 16), (2, 32), (1, 64)])
def test_stem_stride_sets_stage_0_only(stem_stride, first):
    model = ConvNeXt(stem_stride=stem_stride, **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (2, 8, first, first), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    # the stem's patches and the first downsampling take 8 pixels together
    stem = model.downsample_layers[0][0]
    down = model.downsample_layers[1][1]
    assert (stem.kernel_size, stem.stride) == ((stem_stride,) * 2,) * 2
    assert (down.kernel_size, down.stride) == ((8 // stem_stride,) * 2,) * 2
    assert n_params(model) - n_params(ConvNeXt(**SMALL)) == (
        3 * 8 * (stem_stride**2 - 16) + 8 * 16 * ((8 // stem_stride)**2 - 4))


# --------------------------------------------------------- architectures
@pytest.mark.parametrize('arch', list(PUBLISHED_ARCHS))
def test_arch_table_matches_published_widths(arch):
    with torch.device('meta'):
        model = ConvNeXt(arch=arch)
    depths, dims = PUBLISHED_ARCHS[arch]
    assert [len(s) for s in model.stages] == depths
    assert [
        model.downsample_layers[i][0 if i == 0 else 1].out_channels
        for i in range(4)
    ] == dims


def test_official_config_arguments_build_tiny_with_official_param_count():
    """The official UPerNet ConvNeXt-T backbone config, as written there."""
    model = MODELS.build(
        dict(type='ConvNeXt',
             in_chans=3,
             depths=[3, 3, 9, 3],
             dims=[96, 192, 384, 768],
             drop_path_rate=0.4,
             layer_scale_init_value=1.0,
             out_indices=[0, 1, 2, 3]))
    assert isinstance(model, ConvNeXt)
    assert n_params(model) == 27_821_472
    assert model.stages[2][8].drop_path.drop_prob == pytest.approx(0.4 * 14 /
                                                                   17)
    assert model.stages[3][2].gamma.detach().eq(1.0).all()


def formula_param_count(in_ch: int, depths, dims, layer_scale: bool,
                        grn: bool) -> int:
    """Count of the official segmentation backbone, from its definition."""
    total = in_ch * dims[0] * 4 * 4 + dims[0] + 2 * dims[0]  # stem conv + LN
    for i in range(1, 4):  # LN + 2x2 conv
        total += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    for depth, d in zip(depths, dims):
        block = (d * 49 + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
        block += d if layer_scale else 0
        block += 2 * 4 * d if grn else 0
        total += depth * block
    return total + sum(2 * d for d in dims)  # norm0..3


@pytest.mark.parametrize('arch, kwargs, layer_scale, grn', [
    ('base', {}, True, False),
    ('large', {}, True, False),
    ('atto', dict(use_grn=True), False, True),
    ('huge', dict(use_grn=True), False, True),
    ('nano', dict(use_grn=True, layer_scale_init_value=0.5), True, True),
    ('small', dict(layer_scale_init_value=0.0), False, False),
])
def test_param_count_equals_formula(arch, kwargs, layer_scale, grn):
    with torch.device('meta'):
        model = ConvNeXt(arch=arch, in_channels=3, **kwargs)
    depths, dims = PUBLISHED_ARCHS[arch]
    assert n_params(model) == formula_param_count(3, depths, dims, layer_scale,
                                                  grn)


def test_tiny_formula_agrees_with_official_count():
    assert formula_param_count(3, [3, 3, 9, 3], [96, 192, 384, 768], True,
                               False) == 27_821_472


# ------------------------------------------------------------------ keys
def official_keys(depths,
                  dims,
                  layer_scale: bool,
                  grn: bool,
                  in_ch: int = 3) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of the official segmentation backbone."""
    keys = {
        'downsample_layers.0.0.weight': (dims[0], in_ch, 4, 4),
        'downsample_layers.0.0.bias': (dims[0], ),
        'downsample_layers.0.1.weight': (dims[0], ),
        'downsample_layers.0.1.bias': (dims[0], ),
    }
    for i in range(1, 4):
        keys[f'downsample_layers.{i}.0.weight'] = (dims[i - 1], )
        keys[f'downsample_layers.{i}.0.bias'] = (dims[i - 1], )
        keys[f'downsample_layers.{i}.1.weight'] = (dims[i], dims[i - 1], 2, 2)
        keys[f'downsample_layers.{i}.1.bias'] = (dims[i], )
    for s, (depth, d) in enumerate(zip(depths, dims)):
        for b in range(depth):
            p = f'stages.{s}.{b}.'
            keys[p + 'dwconv.weight'] = (d, 1, 7, 7)
            keys[p + 'dwconv.bias'] = (d, )
            keys[p + 'norm.weight'] = (d, )
            keys[p + 'norm.bias'] = (d, )
            keys[p + 'pwconv1.weight'] = (4 * d, d)
            keys[p + 'pwconv1.bias'] = (4 * d, )
            keys[p + 'pwconv2.weight'] = (d, 4 * d)
            keys[p + 'pwconv2.bias'] = (d, )
            if layer_scale:
                keys[p + 'gamma'] = (d, )
            if grn:
                keys[p + 'grn.gamma'] = (1, 1, 1, 4 * d)
                keys[p + 'grn.beta'] = (1, 1, 1, 4 * d)
    for i, d in enumerate(dims):
        keys[f'norm{i}.weight'] = (d, )
        keys[f'norm{i}.bias'] = (d, )
    return keys


@pytest.mark.parametrize('kwargs, layer_scale, grn', [
    ({}, True, False),
    (dict(layer_scale_init_value=0), False, False),
    (dict(use_grn=True), False, True),
])
def test_state_dict_keys_are_the_official_ones(kwargs, layer_scale, grn):
    model = ConvNeXt(arch='atto', **kwargs)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_keys([2, 2, 6, 2], [40, 80, 160, 320], layer_scale,
                                 grn)


def test_classification_checkpoint_loads_after_dropping_head_and_norm():
    """Keys of an official ImageNet checkpoint: only norm{i} is new."""
    model = ConvNeXt(arch='atto', use_grn=True)
    shapes = official_keys([2, 2, 6, 2], [40, 80, 160, 320], False, True)
    ckpt = {
        k: torch.randn(s)
        for k, s in shapes.items() if not k.startswith('norm')
    }
    ckpt.update({
        'norm.weight': torch.ones(320),
        'norm.bias': torch.ones(320),
        'head.weight': torch.ones(1000, 320),
        'head.bias': torch.ones(1000)
    })
    backbone = {
        k: v
        for k, v in ckpt.items() if not k.startswith(('head.', 'norm.'))
    }
    result = model.load_state_dict(backbone, strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(f'norm{i}.{p}'
                                                 for i in range(4)
                                                 for p in ('weight', 'bias'))
    assert torch.equal(model.stages[2][5].grn.beta,
                       backbone['stages.2.5.grn.beta'])


# ------------------------------------------- independent implementation
# HuggingFace ConvNext(V2)Model key -> convseg key, as (pattern, template).
HF_KEY_TABLE: list[tuple[str, str]] = [
    (r'embeddings\.patch_embeddings\.(weight|bias)',
     r'downsample_layers.0.0.\1'),
    (r'embeddings\.layernorm\.(weight|bias)', r'downsample_layers.0.1.\1'),
    (r'encoder\.stages\.(\d)\.downsampling_layer\.([01])\.(weight|bias)',
     r'downsample_layers.\1.\2.\3'),
    (r'encoder\.stages\.(\d)\.layers\.(\d+)\.(dwconv|pwconv1|pwconv2)\.'
     r'(weight|bias)', r'stages.\1.\2.\3.\4'),
    (r'encoder\.stages\.(\d)\.layers\.(\d+)\.layernorm\.(weight|bias)',
     r'stages.\1.\2.norm.\3'),
    (r'encoder\.stages\.(\d)\.layers\.(\d+)\.layer_scale_parameter',
     r'stages.\1.\2.gamma'),
    (r'encoder\.stages\.(\d)\.layers\.(\d+)\.grn\.weight',
     r'stages.\1.\2.grn.gamma'),
    (r'encoder\.stages\.(\d)\.layers\.(\d+)\.grn\.bias',
     r'stages.\1.\2.grn.beta'),
]
# HF's norm of the pooled output, which a segmentation backbone has not.
HF_POOLED_NORM = {'layernorm.weight', 'layernorm.bias'}


def map_hf_state_dict(
        hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in hf_state.items():
        if key in HF_POOLED_NORM:
            continue
        hits = [
            re.sub(p, t, key) for p, t in HF_KEY_TABLE if re.fullmatch(p, key)
        ]
        assert len(hits) == 1, f'{key} matched {len(hits)} table rows'
        mapped[hits[0]] = value
    return mapped


def channels_first_layer_norm(x: torch.Tensor, weight: torch.Tensor,
                              bias: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * weight[:, None, None] \
        + bias[:, None, None]


@pytest.mark.parametrize('version, layer_scale, in_ch', [
    ('v1', 0.5, 3),
    ('v1', 0.0, 4),
    ('v2', None, 3),
])
def test_features_equal_huggingface(version, layer_scale, in_ch):
    common = dict(num_channels=in_ch,
                  hidden_sizes=list(SMALL['dims']),
                  depths=list(SMALL['depths']))
    if version == 'v1':
        hf = transformers.ConvNextModel(
            transformers.ConvNextConfig(layer_scale_init_value=layer_scale,
                                        **common))
        ours = ConvNeXt(layer_scale_init_value=layer_scale,
                        in_chans=in_ch,
                        **SMALL)
    else:
        hf = transformers.ConvNextV2Model(
            transformers.ConvNextV2Config(**common))
        ours = ConvNeXt(use_grn=True, in_channels=in_ch, **SMALL)
    hf.eval()
    ours.eval()
    randomize_(hf, seed=1)
    randomize_(ours, seed=2)  # norm{i}, which HF has not, random too
    mapped = map_hf_state_dict(hf.state_dict())
    assert set(mapped) == {
        k
        for k in ours.state_dict() if not k.startswith('norm')
    }
    ours.load_state_dict(mapped, strict=False)
    assert n_params(ours) - sum(2 * d for d in SMALL['dims']) == \
        n_params(hf) - 2 * SMALL['dims'][-1]

    x = torch.randn(2,
                    in_ch,
                    64,
                    96,
                    generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        hidden = hf(x, output_hidden_states=True).hidden_states
        outs = ours(x)
    assert len(hidden) == 5  # embeddings, then the four stages
    for i, (h, out) in enumerate(zip(hidden[1:], outs)):
        norm = getattr(ours, f'norm{i}')
        expected = channels_first_layer_norm(h, norm.weight, norm.bias)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------- training behaviour
@pytest.mark.parametrize('shape', [(3, 6, 4, 4), (2, 5, 2, 2), (2, 4, 4, 2),
                                   (1, 3, 1, 1)])
@pytest.mark.parametrize('channels_last', [False, True])
def test_small_map_depthwise_conv_equals_conv2d(shape, channels_last):
    """Values and gradients of the per-channel product equal F.conv2d's
    (float64: only rounding differs), in the input's memory format."""
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(shape[1], shape[1], 7, padding=3, groups=shape[1])
    conv = conv.double()
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=fmt).requires_grad_()
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)
    inputs = (x, conv.weight, conv.bias)
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias,
                                          padding=3, groups=shape[1])
    got = small_map_depthwise_conv(x, conv)
    assert got.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for g, e in zip(torch.autograd.grad(got, inputs, grad_out),
                    torch.autograd.grad(expected, inputs, grad_out)):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


def test_training_blocks_on_small_maps_skip_the_conv_module():
    """In training on a 64-px input, stages 2 and 3 (4x4 and 2x2 maps) take
    the per-channel product, stages 0 and 1 (16x16, 8x8) the conv; eval
    takes the conv everywhere."""
    model = ConvNeXt(**SMALL)
    conv_calls = []
    for i, stage in enumerate(model.stages):
        for block in stage:
            block.dwconv.register_forward_hook(
                lambda *_, i=i: conv_calls.append(i))
    x = torch.randn(2, 3, 64, 64)
    model.train()
    model(x)
    assert conv_calls == [0] * SMALL['depths'][0] + [1] * SMALL['depths'][1]
    conv_calls.clear()
    model.eval()
    model(x)
    assert len(conv_calls) == sum(SMALL['depths'])


def test_gradient_checkpointing_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = ConvNeXt(drop_path_rate=0.3, **SMALL)
    ckpt = ConvNeXt(drop_path_rate=0.3, with_cp=True, **SMALL)
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    for block in ckpt.stages[2]:
        block.norm.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(7)
        outs = model(x)
        sum((o * (k + 1)).square().mean()
            for k, o in enumerate(outs)).backward()
        results.append(([o.detach() for o in outs], {
            n: p.grad
            for n, p in model.named_parameters()
        }))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name],
                                   grads_b[name],
                                   rtol=0,
                                   atol=0,
                                   msg=name)
    # each checkpointed block ran twice: forward, and again in backward
    assert len(calls) == 2 * SMALL['depths'][2]


@pytest.mark.parametrize('frozen_stages, frozen_prefixes', [
    (0, ('downsample_layers.0.', )),
    (2, ('downsample_layers.0.', 'stages.0.', 'norm0.', 'downsample_layers.1.',
         'stages.1.', 'norm1.')),
])
def test_frozen_stages_get_no_gradients_and_stay_in_eval(
        frozen_stages, frozen_prefixes):
    model = ConvNeXt(frozen_stages=frozen_stages, drop_path_rate=0.5, **SMALL)
    model.train()
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    for name, param in model.named_parameters():
        frozen = name.startswith(frozen_prefixes)
        assert param.requires_grad is not frozen, name
        assert (param.grad is None) is frozen, name
    for name, module in model.named_modules():
        if name:
            frozen = (name + '.').startswith(frozen_prefixes)
            assert module.training is not frozen, name
    assert model.training


def test_frozen_stages_have_no_drop_path_in_train():
    model = ConvNeXt(frozen_stages=2,
                     drop_path_rate=0.9,
                     out_indices=(1, ),
                     **SMALL).train()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        first, second = model(x)[0], model(x)[0]
    assert torch.equal(first, second)


def test_drop_path_rates_rise_linearly_over_all_blocks():
    model = ConvNeXt(drop_path_rate=0.4, **SMALL)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.0) for stage in model.stages
        for b in stage
    ]
    n = sum(SMALL['depths'])
    assert rates == pytest.approx([0.4 * k / (n - 1) for k in range(n)])


def test_drop_path_off_in_eval_on_in_train():
    torch.manual_seed(0)
    model = ConvNeXt(drop_path_rate=0.5, **SMALL)
    randomize_(model)
    reference = ConvNeXt(drop_path_rate=0.0, **SMALL)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        first, second = model(x), model(x)
        expected = reference.eval()(x)
        model.train()
        trained = model(x)
    for a, b, c in zip(first, second, expected):
        assert torch.equal(a, b)
        assert torch.equal(a, c)
    assert not torch.allclose(trained[-1], expected[-1])


# ------------------------------------------------------------- weights
def test_default_init_is_the_official_one():
    model = ConvNeXt(arch='atto', layer_scale_init_value=0.25)
    randomize_(model)
    model.init_weights()
    weights = torch.cat([
        m.weight.flatten() for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ])
    assert abs(weights.std().item() - 0.02) < 0.001
    for name, param in model.named_parameters():
        if name.endswith('.bias'):
            assert not param.any(), name
        elif name.endswith('gamma'):
            assert torch.equal(param, torch.full_like(param, 0.25)), name
        elif param.dim() == 1:  # LayerNorm weights
            assert torch.equal(param, torch.ones_like(param)), name


def test_grn_starts_as_identity_and_other_init_cfg_goes_to_mmengine():
    model = ConvNeXt(use_grn=True,
                     init_cfg=dict(type='Constant',
                                   layer='Conv2d',
                                   val=0.5,
                                   bias=0.25),
                     **SMALL)
    model.init_weights()
    conv = model.stages[1][0].dwconv
    assert torch.equal(conv.weight, torch.full_like(conv.weight, 0.5))
    assert torch.equal(conv.bias, torch.full_like(conv.bias, 0.25))
    grn = model.stages[1][0].grn
    assert not grn.gamma.any() and not grn.beta.any()
    assert model.stages[1][0].gamma is None


def test_segmentor_pretrained_becomes_the_backbone_init_cfg():
    """mmseg's EncoderDecoder hands ``model.pretrained`` to the backbone."""
    model = MODELS.build(
        ConfigDict(type='EncoderDecoder',
                   pretrained='https://example.com/t.pth',
                   backbone=dict(type='ConvNeXt', **SMALL),
                   decode_head=dict(type='FCNHead',
                                    in_channels=64,
                                    in_index=3,
                                    channels=8,
                                    num_convs=1,
                                    num_classes=3)))
    assert isinstance(model.backbone, ConvNeXt)
    assert model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='https://example.com/t.pth')


# ---------------------------------------------------------- layer decay
def expected_layer_id(name: str, depths, num_layers: int,
                      decay_type: str) -> int:
    """The official rule, restated from the released optimizer constructor."""
    n = num_layers
    if re.fullmatch(r'norm[0-3]\.(weight|bias)', name):
        return n + 1
    head, index, rest = name.split('.', 2)
    stage = int(index)
    if decay_type == 'stage_wise':
        return 0 if head == 'downsample_layers' else stage + 1
    if head == 'downsample_layers':
        return {0: 0, 1: 2, 2: 3, 3: n}[stage]
    block = int(rest.split('.')[0])
    if stage == 2:
        groups = [3 + g for g in range(depths[2]) for _ in range(3)]
        return groups[block]
    return {0: 1, 1: 2, 3: n}[stage]


@pytest.mark.parametrize('arch, num_layers, decay_type, minimum, top', [
    ('tiny', 6, 'stage_wise', 4, 3),
    ('tiny', 6, 'layer_wise', 6, 5),
    ('base', 12, 'stage_wise', 4, 3),
    ('base', 12, 'layer_wise', 12, 11),
])
def test_layer_id_of_every_parameter(arch, num_layers, decay_type, minimum,
                                        top):
    with torch.device('meta'):
        model = ConvNeXt(arch=arch)
    depths = PUBLISHED_ARCHS[arch][0]
    assert model.min_num_layers(decay_type) == minimum
    ids = {}
    for name, _ in model.named_parameters():
        ids[name] = model.get_layer_id(name, num_layers, decay_type)
        assert ids[name] == expected_layer_id(name, depths, num_layers,
                                              decay_type), name
    # below the output norms (N + 1), stage 2 reaches `top`, stage 3 its own id
    stage2 = {v for k, v in ids.items() if k.startswith('stages.2.')}
    assert max(stage2) == top
    last = 4 if decay_type == 'stage_wise' else num_layers
    assert {v for k, v in ids.items() if k.startswith('stages.3.')} == {last}
    assert ids['norm3.bias'] == num_layers + 1


def test_layer_id_errors():
    with torch.device('meta'):
        model = ConvNeXt(arch='tiny')
    with pytest.raises(ValueError) as err:
        model.get_layer_id('stages.0.0.gamma', 5, 'layer_wise')
    assert str(err.value) == (
        "num_layers=5 is too small for decay_type 'layer_wise' with depths "
        '[3, 3, 9, 3]: it must be at least 6.')
    with pytest.raises(ValueError) as err:
        model.get_layer_id('stages.0.0.gamma', 3)
    assert str(err.value) == (
        "num_layers=3 is too small for decay_type 'stage_wise' with depths "
        '[3, 3, 9, 3]: it must be at least 4.')
    with pytest.raises(ValueError) as err:
        model.get_layer_id('stages.0.0.gamma', 6, 'block_wise')
    assert str(err.value) == ("Unknown decay_type 'block_wise'; expected one "
                              "of 'stage_wise', 'layer_wise'.")
    with pytest.raises(ValueError) as err:
        model.min_num_layers('blockwise')
    assert "Unknown decay_type 'blockwise'" in str(err.value)
    with pytest.raises(ValueError) as err:
        model.get_layer_id('backbone.stages.0.0.gamma', 6)
    assert str(err.value) == (
        "'backbone.stages.0.0.gamma' is not a parameter name of this ConvNeXt "
        '(expected downsample_layers.*, stages.* or norm{i}.*, relative to '
        'the backbone).')


# --------------------------------------------------------- bad arguments
@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='medium'),
     "Unknown ConvNeXt arch 'medium'; known archs: atto, femto, pico, nano, "
     'tiny, small, base, large, xlarge, huge (or pass depths and dims).'),
    (dict(depths=[3, 3, 9, 3]),
     'depths and dims must be given together (or neither, to take them from '
     'arch); got depths=[3, 3, 9, 3], dims=None.'),
    (dict(depths=[3, 3, 9], dims=[96, 192, 384, 768]),
     'depths must be 4 positive ints, got [3, 3, 9].'),
    (dict(depths=[3, 3, 9, 3], dims=[96, 192, 384, 0]),
     'dims must be 4 positive ints, got [96, 192, 384, 0].'),
    (dict(arch='small', depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]),
     "arch 'small' has depths (3, 3, 27, 3) and dims (96, 192, 384, 768), "
     'which disagree with the given depths (3, 3, 9, 3) and dims '
     '(96, 192, 384, 768); pass only one of them.'),
    (dict(in_channels=3, in_chans=4),
     'in_channels=3 and its alias in_chans=4 disagree; pass only one of '
     'them.'),
    (dict(in_chans=0), 'in_channels must be a positive int, got 0.'),
    (dict(out_indices=(0, 4)),
     'out_indices must be distinct stage indices in 0..3, got (0, 4).'),
    (dict(out_indices=[1, 1]),
     'out_indices must be distinct stage indices in 0..3, got [1, 1].'),
    (dict(frozen_stages=5), 'frozen_stages must be an int in -1..4, got 5.'),
    (dict(stem_stride=3), 'stem_stride must be 4 (official), 2 or 1, got 3.'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be in [0, 1), got 1.0.'),
    (dict(pretrained='a.pth',
          init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     "pretrained='a.pth' and init_cfg={'type': 'Pretrained', 'checkpoint': "
     "'b.pth'} both say how to initialise the backbone; pass only one."),
    (dict(layer_scale_init_value=-1e-6),
     'layer_scale_init_value must be >= 0 (0 disables layer scale), got '
     '-1e-06.'),
    (dict(gap_before_final_norm=True),
     "gap_before_final_norm=True (mmpretrain's pooled classification "
     "output) does not apply to a segmentation backbone: convseg's ConvNeXt "
     'returns the normalised feature maps of out_indices. Leave '
     'gap_before_final_norm out or set it to False.'),
    (dict(arch=dict(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320])),
     "arch as a dict must have exactly the keys depths and channels "
     "(mmpretrain's spelling), got ['depths', 'dims']; in convseg write "
     'depths=(...), dims=(...) instead.'),
    (dict(arch=dict(depths=[2, 2, 6, 2], channels=[40, 80, 160, 320]),
          depths=[2, 2, 6, 2], dims=[40, 80, 160, 320]),
     'arch=dict(depths=..., channels=...) and depths/dims both give the '
     'stage sizes; pass only one of them.'),
])
def test_bad_arguments_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError) as err:
        with torch.device('meta'):
            ConvNeXt(**kwargs)
    assert str(err.value) == message


def test_matching_arch_and_dims_and_in_chans_alias_are_accepted():
    with torch.device('meta'):
        model = ConvNeXt(arch='atto',
                         depths=[2, 2, 6, 2],
                         dims=[40, 80, 160, 320],
                         in_chans=5)
    assert model.downsample_layers[0][0].in_channels == 5
    assert model.depths == (2, 2, 6, 2)


def test_mmpretrain_spellings_are_accepted():
    with torch.device('meta'):
        model = ConvNeXt(arch=dict(depths=[2, 2, 6, 2],
                                   channels=[40, 80, 160, 320]),
                         gap_before_final_norm=False)
        atto = ConvNeXt(arch='atto')
    assert (model.depths, model.dims) == ((2, 2, 6, 2), (40, 80, 160, 320))
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in atto.state_dict().items()]


def test_no_get_layer_depth_with_a_contract_other_than_mmpretrains():
    assert not hasattr(ConvNeXt, 'get_layer_depth')
