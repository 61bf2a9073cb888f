"""Training-engine parts: the layer-decay optimizer constructor and hooks."""
