"""Our configs under stock mmengine/mmseg tooling, in fresh interpreters.

Each check starts from a new interpreter that never imports convseg itself
(or from a fork of one, made before convseg was loaded): the configs'
``custom_imports`` and the start-up hook (convseg/mmcv_ops_hook.py,
installed by tools/install.sh) must do it.
"""
from __future__ import annotations

import subprocess
import textwrap

import pytest

from convseg import mmcv_ops_hook
from convseg.compat import mmcv_has_compiled_ops

lite_only = pytest.mark.skipif(
    mmcv_has_compiled_ops(), reason='full mmcv imports without the hook')


def run_python(run_script, code: str, hook: bool = True,
               flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python [FLAGS] -c CODE`` from the repository root, hook on or off."""
    return run_script(*flags, '-c', textwrap.dedent(code),
                      env={mmcv_ops_hook.ENV: '1' if hook else '0'})


FRESH = '''
    import sys
    from mmseg.apis import init_model, inference_model
    assert 'convseg' not in sys.modules
'''

#: the checks that start from FRESH, each in its own fork of one interpreter
#: that ran it (tests/fork_snippets.py): none sees what another imported
CHECKS = {
    'apis': '''
    import sys
    assert 'convseg' not in sys.modules
    import numpy as np
    from mmseg.apis import init_model, inference_model
    model = init_model('configs/upernet_convnext_t_ade20k.py', device='cpu')
    # the config's Resize brings any image to 512 rows (two 512x512
    # windows, 15 s on one thread); a small scale keeps every step of it
    resize, = (t for t in model.cfg.test_pipeline if t['type'] == 'Resize')
    resize['scale'] = (128, 32)
    sample = inference_model(model, np.zeros((40, 56, 3), np.uint8))
    print(type(model.backbone).__module__, type(sample).__name__,
          tuple(sample.pred_sem_seg.data.shape),
          tuple(sample.seg_logits.data.shape))
    # the stand-in is convseg's: its error is the one convseg exports
    import convseg.errors
    if convseg.compat.mmcv_has_compiled_ops():
        print('True')
    else:
        from mmcv.ops import DCN
        try:
            DCN()
        except convseg.errors.ConvsegError as err:
            print(type(err) is convseg.compat.MissingMmcvOpError)
    ''',
    'runner': '''
    import sys
    assert 'convseg' not in sys.modules
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile('configs/quickstart_convnext_atto_scenes.py')
    cfg.work_dir = sys.argv[0].rsplit('/', 1)[0] + '/work'
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    # (mmengine's OptimWrapper appends one group of its own, last)
    print(type(runner.model.backbone).__name__,
          sorted({g.get('layer_id') for g in wrapper.param_groups[:-1]}))
    ''',
}


@pytest.fixture(scope='module')
def fresh_checks(tmp_path_factory, snippets_in_forks):
    """CHECKS run after FRESH, with the start-up hook on."""
    return snippets_in_forks(tmp_path_factory.mktemp('fresh_checks'), FRESH,
                             CHECKS, env={mmcv_ops_hook.ENV: '1'})


def test_mmseg_apis_build_and_run_the_ade20k_config_without_import_convseg(
        fresh_checks):
    result = fresh_checks['apis']
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        'convseg.models.convnext', 'SegDataSample', '(1,', '40,', '56)',
        '(150,', '40,', '56)', 'True']


def test_runner_from_cfg_builds_model_and_layer_decay_optimizer(
        fresh_checks):
    result = fresh_checks['runner']
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-7:] == [
        'ConvNeXt', '[0,', '1,', '2,', '3,', '4,', '5]']


@lite_only
def test_without_the_hook_mmseg_fails_on_mmcv_lite(run_script):
    result = run_python(run_script, FRESH, hook=False)
    assert result.returncode == 1
    assert "No module named 'mmcv._ext'" in result.stderr


def test_installed_pth_file_registers_one_finder(tmp_path, run_script):
    written = mmcv_ops_hook.install_pth(str(tmp_path))
    assert written == str(tmp_path / mmcv_ops_hook.PTH_NAME)
    (tmp_path / 'gone.pth').write_text(
        mmcv_ops_hook.pth_line(str(tmp_path / 'missing.py')))
    result = run_python(run_script, f'''
    import site, sys
    site.addsitedir({str(tmp_path)!r})
    site.addsitedir({str(tmp_path)!r})
    print(sum(type(f).__name__ == 'MmcvOpsFinder' for f in sys.meta_path),
          'mmcv' in sys.modules)
    ''', flags=('-S', ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['1', 'False']


def test_finder_answers_only_for_mmcv_ops():
    finder = mmcv_ops_hook.MmcvOpsFinder()
    assert finder.find_spec('mmcv.cnn') is None
    assert finder.find_spec('mmcv.ops.nms') is None
    expected = None if mmcv_has_compiled_ops() else 'mmcv.ops'
    spec = finder.find_spec('mmcv.ops')
    assert (spec and spec.name) == expected
