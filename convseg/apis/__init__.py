"""Inference API: init_model and inference_model."""
