"""OpenVINO: files from tools/export_openvino.py run where PyTorch
segmentors do and give their results (fp32), close ones (bf16 hint, int8);
bad files are refused with messages that say what to do."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint

from convseg.apis import inference_labels, inference_model, init_model
from convseg.deploy.errors import (DeployError, MissingDeployPackageError,
                                   OnnxInputError)
from convseg.deploy.openvino_runtime import OvSegmentor, read_rt_info

pytest.importorskip('openvino', reason='the openvino extra is not '
                    'installed: pip install -e ".[openvino]"')
pytest.importorskip('nncf', reason='the openvino extra is not installed: '
                    'pip install -e ".[openvino]"')

from convseg.deploy.openvino_export import (convert_to_openvino,  # noqa: E402
                                            onnx_to_openvino, save_openvino)
from convseg.deploy.quantize import val_items  # noqa: E402
from convseg.hardware import cpu_has_native_bf16  # noqa: E402

CHECK = re.compile(r'^check batch (\d+), (\d+)x(\d+): max relative logit '
                   r'difference (\S+) \((.*?)\), pixel agreement (\S+)% '
                   r'\((.*?)\): (ok|FAILED)$', re.M)
VAL = re.compile(r'^val split \((\d+) images\): float mIoU (\S+), int8 mIoU '
                 r'(\S+) \(drop (\S+)\), pixel agreement (\S+)%$', re.M)


QUICKSTART = 'configs/quickstart_convnext_atto_scenes.py'

def random_images(count: int, size: tuple[int, int], seed: int
                  ) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            for _ in range(count)]


@pytest.fixture(scope='session')
def ov_file(tmp_path_factory: pytest.TempPathFactory, tiny: dict,
            onnx_files: dict) -> str:
    """The tiny model as a dynamic OpenVINO file (fp32 hint), converted from
    its dynamic ONNX export (tests/deploy/conftest.py): an export takes about
    10 s, and :func:`convert_to_openvino` is that export and this
    conversion (the int8 test runs it whole, in tools/export_openvino.py)."""
    path = tmp_path_factory.mktemp('openvino') / 'dynamic.xml'
    save_openvino(onnx_to_openvino(onnx_files['dynamic'], tiny['meta']),
                  path)
    return str(path)


def test_openvino_fp32_slide_inference_equals_pytorch(tiny, torch_model,
                                                      ov_file):
    model = init_model(tiny['config'], ov_file)
    assert isinstance(model, OvSegmentor) and model.precision == 'fp32'
    assert model.dataset_meta['classes'] == tuple(tiny['meta']['classes'])
    images = random_images(2, (100, 150), seed=0)
    expected = inference_model(torch_model, images, return_logits=True)
    for want, have in zip(expected, inference_model(model, images,
                                                    return_logits=True)):
        scale = want.seg_logits.data.abs().max()
        diff = (have.seg_logits.data - want.seg_logits.data).abs().max()
        # measured 1.0e-6 (random weights, 64x64 windows)
        assert diff / scale < 1e-5
        assert (have.pred_sem_seg.data == want.pred_sem_seg.data
                ).float().mean() >= 0.9999


def test_file_keeps_classes_palette_and_precision(tiny, ov_file):
    from convseg.deploy.openvino_runtime import read_openvino_model
    info = read_rt_info(read_openvino_model(ov_file))
    assert info['precision'] == 'fp32'
    assert info['classes'] == ('["sky", "road", "tree", "car", "person"]')
    assert info['palette'].startswith('[[70, 130, 180], [128, 64, 128]')


def test_bad_files_are_refused_clearly(tiny, tmp_path, ov_file):
    missing = tmp_path / 'none.xml'
    with pytest.raises(FileNotFoundError) as err:
        init_model(tiny['config'], str(missing))
    assert str(err.value) == (
        f'OpenVINO file {missing} does not exist; write {missing} and its '
        '.bin with tools/export_openvino.py')
    lonely = tmp_path / 'lonely.xml'
    lonely.write_bytes(open(ov_file, 'rb').read())
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'OpenVINO file {tmp_path / "lonely.bin"} does not exist')):
        init_model(tiny['config'], str(lonely))
    with pytest.raises(DeployError) as err:
        init_model(tiny['config'], tiny['checkpoint'], backend='openvino')
    assert str(err.value) == (
        'backend openvino needs an OpenVINO .xml file (write one with '
        f'tools/export_openvino.py), got {tiny["checkpoint"]}')
    broken = tmp_path / 'broken.xml'
    broken.write_text('<net>')
    (tmp_path / 'broken.bin').write_bytes(b'')
    with pytest.raises(OnnxInputError, match=re.escape(
            f'{broken} is not an OpenVINO model that OpenVINO can read: ')):
        init_model(tiny['config'], str(broken))


def test_save_refuses_other_suffixes_and_leaves_nothing(tiny, onnx_files,
                                                       tmp_path):
    model = onnx_to_openvino(onnx_files['fixed_64x64_b1'], tiny['meta'])
    with pytest.raises(OnnxInputError) as err:
        save_openvino(model, tmp_path / 'model.onnx')
    assert str(err.value) == (
        f'{tmp_path / "model.onnx"}: an OpenVINO model is written as an '
        '.xml file (and a .bin beside it); name the output OUT.xml')
    assert list(tmp_path.iterdir()) == []


def test_missing_openvino_names_the_extra(tiny, ov_file, monkeypatch):
    monkeypatch.setitem(sys.modules, 'openvino', None)
    with pytest.raises(MissingDeployPackageError) as err:
        init_model(tiny['config'], ov_file)
    assert str(err.value).startswith('openvino is not installed (')
    assert str(err.value).endswith(
        '); the OpenVINO backend and its int8 quantization need the '
        'openvino extra: pip install -e ".[openvino]"')


def test_benchmark_times_openvino_beside_pytorch(tmp_path, tiny, ov_file,
                                                 run_script):
    out = tmp_path / 'figures.json'
    result = run_script('tools/benchmark.py', tiny['config'],
                        '--checkpoint', tiny['checkpoint'], '--device', 'cpu',
                        '--shape', 100, 150, '--batch', 1, '--repeat', 1,
                        '--warmup', 1, '--test-mode', 'slide', '--no-fast',
                        '--openvino', ov_file, '--openvino-precision',
                        'fp32', '--json', out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    figures = json.loads(out.read_text())['results']
    name = 'openvino:dynamic.xml:fp32'
    assert figures[name]['ms_per_batch'] > 0
    agree = figures[name + '_agreement']
    assert agree['argmax_equal'] >= 0.9999
    assert agree['max_rel_logit_diff'] < 1e-5
    line = re.search(rf'^{name}: argmax equal on (\S+)% of pixels',
                     result.stdout, re.M)
    assert float(line.group(1)) == round(100 * agree['argmax_equal'], 4)


@pytest.mark.parametrize('args, message', [
    (['--calib-images', '0'], '--calib-images must be at least 1, got 0'),
    (['--int8', '--val-images', '0'],
     '--val-images must be at least 1, got 0'),
    (['--val-images', '4'], '--val-images is an option of --int8'),
    (['--max-miou-drop', '0.5'], '--max-miou-drop is an option of --int8'),
])
def test_int8_options_are_checked_first(tmp_path, run_script, repo_root, args,
                                        message):
    result = run_script('tools/export_openvino.py',
                        str(repo_root / QUICKSTART), tmp_path / 'none.pth',
                        tmp_path / 'out.xml', *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(f'error: {message}')
    assert list(tmp_path.iterdir()) == []


def test_val_images_are_spread_over_the_split(repo_root, scenes_root):
    cfg = Config.fromfile(str(repo_root / QUICKSTART))
    cfg.val_dataloader.dataset.data_root = scenes_root
    init_default_scope('mmseg')
    folder = Path(scenes_root) / 'images' / 'validation'
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 4

    def picked(count):
        return [Path(item['data_samples'].img_path).name
                for item in val_items(cfg, count)]

    assert picked(None) == names
    assert picked(10) == names
    # 3 of 4: the first, the last and, of the two between, the one
    # numpy's round-half-to-even picks (index 1.5 -> 2)
    assert picked(3) == [names[0], names[2], names[3]]
    assert picked(1) == [names[0]]


def test_int8_without_its_splits_stops_before_calibrating(
        tmp_path, run_script, repo_root, scenes_root):
    config = str(repo_root / QUICKSTART)
    checkpoint = tmp_path / 'random.pth'
    torch.manual_seed(0)
    save_checkpoint(dict(state_dict=init_model(config, None, fast=False)
                         .state_dict()), str(checkpoint))
    out = tmp_path / 'int8.xml'
    for split, folder, use in (
            ('val', 'validation',
             'the int8 export measures float and int8 mIoU on it'),
            ('train', 'training', 'int8 calibration reads its images')):
        nowhere = tmp_path / f'no_{split}'
        options = [f'{split}_dataloader.dataset.data_root={nowhere}']
        if split == 'train':
            # the val split is read first: here it is there
            options.append(f'val_dataloader.dataset.data_root={scenes_root}')
        result = run_script('tools/export_openvino.py', config, checkpoint,
                            out, '--int8', '--cfg-options', *options)
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f'error: the {split} split of the config is not there '
            f'({nowhere}/images/{folder}): {use}; point '
            f'{split}_dataloader.dataset.data_root at your data with '
            '--cfg-options')
        assert 'int8 calibration on' not in result.stdout + result.stderr
    # nothing written: no .xml, no .bin
    assert [p.name for p in tmp_path.iterdir()] == ['random.pth']


# last in the file: the quickstart model it quantizes may still be training
# on another worker when this file starts
def test_int8_and_bf16_on_a_trained_model(quickstart_run, tmp_path,
                                          run_script, repo_root):
    # the model tools/quickstart.py trained (shared by the session)
    config = str(repo_root / QUICKSTART)
    checkpoint = str(quickstart_run['work'] /
                     f'iter_{quickstart_run["iters"]}.pth')
    scenes_root = quickstart_run['data']
    out = tmp_path / 'int8.xml'
    result = run_script(
        'tools/export_openvino.py', config, checkpoint, out, '--int8',
        '--calib-images', 16, '--max-miou-drop', 2.0, '--cfg-options',
        *[f'{loader}.dataset.data_root={scenes_root}' for loader in
          ('train_dataloader', 'val_dataloader', 'test_dataloader')])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    count, float_miou, int8_miou, drop, agree = VAL.search(
        result.stdout).groups()
    assert int(count) == 8
    # measured: float 36.52, int8 36.86 (drop -0.34), agreement 99.19%
    assert float(float_miou) > 30
    assert float(drop) <= 2.0
    assert float(agree) >= 98.0
    check = CHECK.search(result.stdout).groups()
    assert check[:3] == ('1', '64', '64') and check[-1] == 'ok'
    assert out.with_suffix('.bin').is_file()

    trained = init_model(config, checkpoint, fast=False)
    images = sorted(str(p) for p in
                    (Path(scenes_root) / 'images' / 'validation').iterdir())
    reference = inference_labels(trained, images)
    int8 = inference_labels(init_model(config, str(out)), images)
    agree = np.mean([(a == b).mean() for a, b in zip(reference, int8)])
    assert agree >= 0.97
    if cpu_has_native_bf16():
        fp32_file = tmp_path / 'fp32.xml'
        save_openvino(convert_to_openvino(trained, (64, 64)), fp32_file)
        bf16 = inference_labels(init_model(config, str(fp32_file),
                                           precision='bf16'), images)
        agree = np.mean([(a == b).mean() for a, b in zip(reference, bf16)])
        assert agree >= 0.99
