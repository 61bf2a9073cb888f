"""tools/export_onnx.py end to end, and the quickstart model deployed:
trained by tools/train.py, exported with --dynamic, run by onnxruntime on
the validation scenes (mmengine's test loop and demo/image_demo.py), with
PyTorch's mIoU and masks."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from convseg.apis import inference_labels, init_model

CHECK = re.compile(r'^check batch (\d+), (\d+)x(\d+): max relative logit '
                   r'difference (\S+) \(limit (\S+)\), pixel agreement '
                   r'(\S+)% \(limit (\S+)%\): (ok|FAILED)$', re.M)
QUICKSTART = 'configs/quickstart_convnext_atto_scenes.py'


def test_failed_check_exits_1_and_keeps_the_file(tmp_path, tiny,
                                                 run_script):
    out = tmp_path / 'b2.onnx'
    result = run_script('tools/export_onnx.py', tiny['config'],
                        tiny['checkpoint'], out, '--shape', 64, 96,
                        '--batch', 2, '--max-rel-diff', 1e-3,
                        '--min-agreement', 1.01)
    assert result.returncode == 1
    (check, ) = CHECK.findall(result.stdout)
    assert check[:3] == ('2', '64', '96') and check[7] == 'FAILED'
    assert float(check[3]) <= 1e-3 and check[4] == '0.001'
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: onnxruntime does not reproduce the PyTorch model; {out} is '
        'kept for inspection')
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 64, 96]


def test_tool_without_the_extra_says_what_to_install(tmp_path, tiny,
                                                     run_script, repo_root):
    # the tool run as a script with onnxscript made unimportable first
    wrapper = tmp_path / 'export_without_onnxscript.py'
    wrapper.write_text(
        'import runpy, sys\n'
        'sys.modules["onnxscript"] = None\n'
        f'sys.argv = ["export_onnx.py", {tiny["config"]!r}, '
        f'{tiny["checkpoint"]!r}, {str(tmp_path / "x.onnx")!r}]\n'
        f'runpy.run_path({str(repo_root / "tools/export_onnx.py")!r}, '
        'run_name="__main__")\n')
    result = run_script(wrapper)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: onnxscript is not installed (')
    assert last.endswith('ONNX export and the onnxruntime backend need the '
                         'deploy extra: pip install -e ".[deploy]"')
    assert not (tmp_path / 'x.onnx').exists()


def test_quickstart_model_deploys_with_the_same_miou(tmp_path, quickstart_run,
                                                     run_script, repo_root):
    # the model tools/quickstart.py trained (the quickstart_run fixture's
    # 100 iterations, shared by the session): enough to tell several
    # classes apart
    scenes_root, iters = str(quickstart_run['data']), quickstart_run['iters']
    data = [f'{loader}.dataset.data_root={scenes_root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')]
    checkpoint = quickstart_run['work'] / f'iter_{iters}.pth'
    result = run_script('tools/test.py', QUICKSTART, checkpoint,
                        '--work-dir', tmp_path / 'test', '--cfg-options',
                        *data)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads(
        (tmp_path / 'test' / f'iter_{iters}_metrics.json').read_text())

    # dynamic: checked at the training crop size and at a second shape
    onnx_file = tmp_path / 'quickstart.onnx'
    result = run_script('tools/export_onnx.py', QUICKSTART, checkpoint,
                        onnx_file, '--dynamic', '--opset', 18)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    checks = CHECK.findall(result.stdout)
    assert [c[:3] for c in checks] == [('1', '64', '64'), ('2', '96', '128')]
    for check in checks:
        assert float(check[3]) <= 1e-4 and check[4] == '0.0001'
        assert float(check[5]) >= 99.99 and check[6] == '99.99'
        assert check[7] == 'ok'
    model = onnx.load(onnx_file)
    assert [o.version for o in model.opset_import if o.domain == ''] == [18]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]

    # mmengine's test loop (as tools/test.py runs it) on the ONNX model
    cfg = Config.fromfile(repo_root / QUICKSTART)
    cfg.merge_from_dict({f'{loader}.dataset.data_root': scenes_root
                         for loader in ('val_dataloader', 'test_dataloader')})
    cfg.work_dir = str(tmp_path / 'ort_test')
    runner = Runner.from_cfg(cfg)
    runner.model = init_model(cfg, str(onnx_file))
    metrics = runner.test()
    assert abs(metrics['mIoU'] - expected['mIoU']) < 1e-6

    # the image demo through onnxruntime draws PyTorch's masks
    val = Path(scenes_root) / 'images' / 'validation'
    out = tmp_path / 'demo'
    result = run_script('demo/image_demo.py', val, QUICKSTART, onnx_file,
                        '--backend', 'onnxruntime', '--device', 'cpu',
                        '--out-dir', out)
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted(val.iterdir())
    torch_model = init_model(str(repo_root / QUICKSTART), str(checkpoint),
                             fast=False)
    predicted = set()
    for path, labels in zip(paths, inference_labels(torch_model,
                                                    [str(p) for p in paths])):
        mask = np.asarray(Image.open(out / f'{path.stem}_mask.png'))
        assert (mask == labels).mean() >= 0.9999
        predicted |= set(np.unique(labels).tolist())
    # an untrained model predicts one or two classes everywhere: agreement
    # on those would say little
    assert len(predicted) >= 3, predicted
