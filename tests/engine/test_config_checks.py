"""The model-argument check: shipped configs pass, unknown arguments are
named."""
import os

import pytest


def test_every_shipped_config_passes_the_argument_check(repo_root):
    import glob

    from mmengine.config import Config

    from convseg.engine.config_checks import check_model_config

    paths = sorted(glob.glob(os.path.join(repo_root, 'configs', '*.py')))
    assert len(paths) >= 10
    for path in paths:
        check_model_config(Config.fromfile(path).model)


@pytest.mark.parametrize('key, value, expected', [
    ('decode_head.pool_scale', (1, 2),
     "model.decode_head.pool_scale: UPerHead has no argument 'pool_scale'. "
     "Did you mean 'pool_scales'? It accepts: pool_scales, in_channels, "
     'channels, num_classes, '),
    ('auxiliary_head.loss_decode.weight', 0.4,
     'model.auxiliary_head.loss_decode.weight: CrossEntropyLoss has no '
     "argument 'weight'. Did you mean 'loss_weight'? It accepts: "
     'use_sigmoid, use_mask, reduction, class_weight, loss_weight, '),
    ('backbone.stochastic_depth', 0.1,
     "model.backbone.stochastic_depth: ConvNeXt has no argument "
     "'stochastic_depth'. It accepts: arch, in_channels, depths, dims, "
     'drop_path_rate, '),
])
def test_unknown_model_arguments_are_named(key, value, expected, repo_root):
    from mmengine.config import Config

    from convseg.engine.config_checks import (ConfigArgumentError,
                                              check_model_config)

    cfg = Config.fromfile(os.path.join(repo_root, 'configs',
                                       'upernet_convnext_t_ade20k.py'))
    cfg.merge_from_dict({f'model.{key}': value})
    with pytest.raises(ConfigArgumentError) as info:
        check_model_config(cfg.model)
    assert str(info.value).startswith(expected)
