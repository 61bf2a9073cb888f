"""Inference API: init_model, inference_model (mmseg's SegDataSample results)
and inference_labels (label maps)."""
from ..imageio import load_image  # noqa: F401
from .inference import (inference_labels, inference_model,  # noqa: F401
                        init_model)
