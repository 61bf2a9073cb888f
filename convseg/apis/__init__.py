"""Inference API: init_model and inference_model."""
from .images import load_image  # noqa: F401
from .inference import inference_model, init_model  # noqa: F401
