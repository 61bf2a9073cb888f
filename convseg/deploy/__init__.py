"""Deployment: ONNX export with an exactness check, onnxruntime inference.

- :mod:`convseg.deploy.export`: :func:`~convseg.deploy.export.export_onnx`
  writes a UPerNet segmentor as an ONNX graph (``image`` RGB 0..255 in,
  ``logits`` and ``labels`` out, class names and palette in the metadata);
  :func:`~convseg.deploy.export.compare_with_onnx` measures how far
  onnxruntime's logits are from PyTorch's.
- :mod:`convseg.deploy.runtime`: :class:`~convseg.deploy.runtime.OrtSegmentor`
  runs such a file where a PyTorch segmentor is expected
  (``init_model(config, 'model.onnx')``, the demos, slide inference).

onnx, onnxruntime and onnxscript come with the ``deploy`` extra
(``pip install -e ".[deploy]"``); they are imported only when used.
"""
