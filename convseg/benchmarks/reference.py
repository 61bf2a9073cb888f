"""mmseg's reference UPerNet-ConvNeXt, built from mmseg's own config file.

The reference is what mmseg trains: ``mmpretrain.ConvNeXt`` with mmseg's
``UPerHead`` and ``FCNHead``, the values of mmseg's
``convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py`` (shipped inside
the mmseg package), trained by its ``AmpOptimWrapper`` with
``LearningRateDecayOptimizerConstructor``. The benchmarks time it beside
convseg's model of the same config.

mmpretrain's ConvNeXt is reached by one of two routes, and the build says
which ran:

* ``'mmpretrain'``: ``import mmpretrain.models``, as mmseg's config does.
  That package imports torchvision, which needs a build matching torch.
* ``'mmpretrain-backbone-file'``: where torchvision does not import,
  mmpretrain's ``models/backbones/convnext.py`` and the norm layers it uses
  are loaded from mmpretrain's files without the ``mmpretrain.models``
  package ``__init__`` (which pulls torchvision in): the same code path,
  registered in mmpretrain's registry as usual. The packages
  ``mmpretrain.models``, ``.utils`` and ``.backbones`` are then bare
  packages in ``sys.modules`` for the rest of the process.

Where neither works, :class:`ReferenceUnavailableError` says why, so that a
benchmark leaves the row out with the reason.
"""
from __future__ import annotations

import importlib
import importlib.util
import os.path as osp
import sys
import types

import torch.nn as nn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from convseg.errors import ConvsegError

#: mmseg's config of the reference, relative to mmseg's shipped configs
REFERENCE_CONFIG = ('convnext/'
                    'convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py')
#: the routes to mmpretrain's ConvNeXt, in the order they are tried
ROUTES = ('mmpretrain', 'mmpretrain-backbone-file')
#: the bare packages of the backbone-file route
_BARE_PACKAGES = ('mmpretrain.models', 'mmpretrain.models.utils',
                  'mmpretrain.models.backbones')
#: the route this process took, once taken
_loaded: list[str] = []


class ReferenceUnavailableError(ConvsegError, RuntimeError):
    """mmseg's reference model cannot be built here; the message says why."""


def mmseg_config_path(name: str = REFERENCE_CONFIG) -> str:
    """The path of one of the configs shipped inside the mmseg package."""
    spec = importlib.util.find_spec('mmseg')
    path = osp.join(osp.dirname(spec.origin), '.mim', 'configs', name)
    if not osp.isfile(path):
        raise ReferenceUnavailableError(
            f'mmseg has no config {name} ({path} is missing); install '
            'mmsegmentation 1.2 from its wheel, which ships its configs')
    return path


def _torchvision_error() -> str | None:
    """Why torchvision does not import here, or None."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # any failure: a missing or mismatched build
        return f'{type(err).__name__}: {err}'
    return None


def _load_backbone_file(root: str) -> None:
    """Load mmpretrain's ConvNeXt module without mmpretrain.models'
    ``__init__``: bare packages over mmpretrain's folders, then the norm
    layers and the backbone module itself."""
    import mmpretrain.registry  # noqa: F401  (imports only mmengine)
    for name in _BARE_PACKAGES:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [osp.join(root, *name.split('.')[1:])]
            sys.modules[name] = package
    norm = importlib.import_module('mmpretrain.models.utils.norm')
    utils = sys.modules['mmpretrain.models.utils']
    utils.GRN, utils.build_norm_layer = norm.GRN, norm.build_norm_layer
    importlib.import_module('mmpretrain.models.backbones.convnext')


def load_mmpretrain_convnext() -> str:
    """Register mmpretrain's ConvNeXt in mmpretrain's MODELS; return the
    route that did it (one of :data:`ROUTES`)."""
    spec = importlib.util.find_spec('mmpretrain')
    if spec is None:
        raise ReferenceUnavailableError(
            'mmpretrain is not installed: pip install mmpretrain==1.2.0 '
            '(bash tools/install.sh --bench makes a venv with it)')
    if _loaded:
        return _loaded[0]
    reason = _torchvision_error()
    try:
        if reason is None:
            importlib.import_module('mmpretrain.models')
        else:
            _load_backbone_file(spec.submodule_search_locations[0])
    except Exception as err:
        raise ReferenceUnavailableError(
            f"mmpretrain's ConvNeXt cannot be loaded ({type(err).__name__}: "
            f'{err}); torchvision: {reason or "imports"}') from err
    _loaded.append(ROUTES[0] if reason is None else ROUTES[1])
    return _loaded[0]


def reference_config(ours: Config | None = None) -> Config:
    """mmseg's reference config with random weights.

    With ``ours`` (a convseg config), the backbone's stage sizes and the
    heads' channels and classes follow it, so that the two models have the
    same shapes; everything else stays mmseg's.
    """
    cfg = Config.fromfile(mmseg_config_path(), import_custom_modules=False)
    cfg.pop('custom_imports', None)
    model = cfg.model
    model.backbone.init_cfg = None
    if ours is None:
        return cfg
    backbone = ours.model.backbone
    model.backbone.arch = backbone.arch if backbone.get('arch') else dict(
        depths=list(backbone.depths), channels=list(backbone.dims))
    for head in ('decode_head', 'auxiliary_head'):
        if head in ours.model:
            for key in ('in_channels', 'channels', 'num_classes'):
                model[head][key] = ours.model[head][key]
    model.data_preprocessor = ours.model.data_preprocessor
    return cfg


def build_reference(ours: Config | None = None) -> tuple[nn.Module, str]:
    """mmseg's reference segmentor (random weights, BatchNorm, CPU) and the
    route that loaded mmpretrain's ConvNeXt."""
    route = load_mmpretrain_convnext()
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(reference_config(ours).model)
    return revert_sync_batchnorm(model), route
