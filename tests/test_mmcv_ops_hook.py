"""Our configs under stock mmengine/mmseg tooling, in fresh interpreters.

Each test starts a new interpreter that never imports convseg itself: the
configs' ``custom_imports`` and the start-up hook (convseg/mmcv_ops_hook.py,
installed by tools/install.sh) must do it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convseg import mmcv_ops_hook
from convseg.compat import mmcv_has_compiled_ops

ROOT = Path(__file__).resolve().parents[1]
lite_only = pytest.mark.skipif(
    mmcv_has_compiled_ops(), reason='full mmcv imports without the hook')


def run_python(code: str, hook: bool = True,
               args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env[mmcv_ops_hook.ENV] = '1' if hook else '0'
    return subprocess.run(
        [sys.executable, *args, '-c', textwrap.dedent(code)], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=600)


FRESH = '''
    import sys
    from mmseg.apis import init_model, inference_model
    assert 'convseg' not in sys.modules
'''


def test_mmseg_apis_build_and_run_the_ade20k_config_without_import_convseg():
    result = run_python(FRESH + '''
    import numpy as np
    model = init_model('configs/upernet_convnext_t_ade20k.py', device='cpu')
    sample = inference_model(model, np.zeros((40, 56, 3), np.uint8))
    print(type(model.backbone).__module__, type(sample).__name__,
          tuple(sample.pred_sem_seg.data.shape),
          tuple(sample.seg_logits.data.shape))
    ''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        'convseg.models.convnext', 'SegDataSample', '(1,', '40,', '56)',
        '(150,', '40,', '56)']


def test_runner_from_cfg_builds_model_and_layer_decay_optimizer(tmp_path):
    result = run_python(FRESH + f'''
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile('configs/quickstart_convnext_atto_scenes.py')
    cfg.work_dir = {str(tmp_path)!r}
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    # (mmengine's OptimWrapper appends one group of its own, last)
    print(type(runner.model.backbone).__name__,
          sorted({{g.get('layer_id') for g in wrapper.param_groups[:-1]}}))
    ''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-7:] == [
        'ConvNeXt', '[0,', '1,', '2,', '3,', '4,', '5]']


@lite_only
def test_without_the_hook_mmseg_fails_on_mmcv_lite():
    result = run_python(FRESH, hook=False)
    assert result.returncode == 1
    assert "No module named 'mmcv._ext'" in result.stderr


def test_installed_pth_file_registers_one_finder(tmp_path):
    written = mmcv_ops_hook.install_pth(str(tmp_path))
    assert written == str(tmp_path / mmcv_ops_hook.PTH_NAME)
    (tmp_path / 'gone.pth').write_text(
        mmcv_ops_hook.pth_line(str(tmp_path / 'missing.py')))
    result = run_python(f'''
    import site, sys
    site.addsitedir({str(tmp_path)!r})
    site.addsitedir({str(tmp_path)!r})
    print(sum(type(f).__name__ == 'MmcvOpsFinder' for f in sys.meta_path),
          'mmcv' in sys.modules)
    ''', args=('-S', ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['1', 'False']


def test_finder_answers_only_for_mmcv_ops():
    finder = mmcv_ops_hook.MmcvOpsFinder()
    assert finder.find_spec('mmcv.cnn') is None
    assert finder.find_spec('mmcv.ops.nms') is None
    expected = None if mmcv_has_compiled_ops() else 'mmcv.ops'
    spec = finder.find_spec('mmcv.ops')
    assert (spec and spec.name) == expected
