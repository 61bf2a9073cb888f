"""Deployment: ONNX and OpenVINO export with exactness checks, runtimes.

- :mod:`convseg.deploy.contract`: what every exported graph takes and gives
  (``image`` RGB 0..255 in, ``logits`` and ``labels`` out, class names and
  palette in the file) and the comparison with PyTorch.
- :mod:`convseg.deploy.export`: :func:`~convseg.deploy.export.export_onnx`
  writes a UPerNet segmentor as an ONNX graph;
  :func:`~convseg.deploy.export.compare_with_onnx` measures how far
  onnxruntime's logits are from PyTorch's.
- :mod:`convseg.deploy.segmentor`: the ``EncoderDecoder`` every backend
  runs behind, so exported files run where PyTorch segmentors do
  (``init_model(config, 'model.onnx')``, the demos, slide inference).
- :mod:`convseg.deploy.runtime`: onnxruntime;
  :mod:`convseg.deploy.openvino_runtime`: OpenVINO (``.xml``);
  :mod:`convseg.deploy.backends`: which one a checkpoint needs.
- :mod:`convseg.deploy.openvino_export`: the OpenVINO file, through the
  ONNX export; :mod:`convseg.deploy.quantize`: NNCF int8 within an mIoU
  budget.

onnx, onnxruntime and onnxscript come with the ``deploy`` extra
(``pip install -e ".[deploy]"``), openvino and nncf with the ``openvino``
extra; they are imported only when used.
"""
