"""Training-engine parts: the layer-decay optimizer constructor and hooks."""
from .layer_decay import LayerDecayOptimWrapperConstructor  # noqa: F401
