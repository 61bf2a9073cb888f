"""Reliability of the real tools on a generated ADE20K-layout dataset.

A tiny UPerNet-ConvNeXt built from the project's base configs (which bring
the crash-safety hooks) trains with random resize, crop, flip, photometric
distortion, drop path and dropout, so every random stream matters. Runs that
must crash or be killed are subprocesses of tools/train.py; tools that only
have to refuse something run in this process through runpy.
"""
import argparse
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

import convseg  # noqa: F401
from convseg import checkpoint_reading
from convseg.datasets import generate_ade20k
from convseg.engine.checkpoint_files import (find_resume_checkpoint,
                                          is_complete_checkpoint)

TRAIN = 'tools/train.py'
TEST = 'tools/test.py'
CHECK = 'tools/check_dataset.py'
CONVERT = 'tools/convert_checkpoint.py'
DEMO = 'demo/image_demo.py'
MAX_ITERS = 6

# the shared tiny training config (tests/conftest.py) with random resize,
# crop, flip and photometric distortion, one loader worker, a poly schedule
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(64, 64), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(32, 32), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
OVERRIDES = dict(
    train_dataloader=dict(num_workers=1,
                          dataset=dict(pipeline=TRAIN_PIPELINE)),
    optim_wrapper=dict(optimizer=dict(lr=1e-2)),
    param_scheduler=[dict(type='PolyLR', power=1.0, eta_min=0.0,
                          by_epoch=False, begin=0, end=8)],
    train_cfg=dict(max_iters=MAX_ITERS))


@pytest.fixture(scope='module')
def setup(tmp_path_factory, tiny_train_config, run_script):
    """Data, config and one uninterrupted run of MAX_ITERS iterations.

    The data is this module's own: a test moves one of its files.
    """
    root = tmp_path_factory.mktemp('reliability')
    data_root = generate_ade20k(str(root / 'data'), num_train=8, num_val=2,
                                size=(48, 64))
    config = tiny_train_config(root / 'tiny.py', data_root, **OVERRIDES)
    work = root / 'uninterrupted'
    result = run_script(TRAIN, config, '--work-dir', work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return dict(root=root, data_root=data_root, config=str(config),
                work=work, final=work / f'iter_{MAX_ITERS}.pth')


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)[
        'state_dict']


@pytest.fixture
def run_in_process(repo_root, monkeypatch, capsys):
    """``run_in_process(script, args)``: run a tool in this process as
    ``python script args`` would; return (exit code, stdout, stderr).

    An exception that escapes the tool is raised here, so a crash fails the
    test instead of passing for a clear error. stderr starts at the tool's
    ``error:`` line when there is one (loggers of earlier in-process runs may
    write noise before it).
    """
    def run(script, args):
        path = str(repo_root / script)
        monkeypatch.setattr(sys, 'argv', [path] + [str(a) for a in args])
        code = 0
        try:
            runpy.run_path(path, run_name='__main__')
        except SystemExit as done:
            code = done.code or 0
        out, err = capsys.readouterr()
        if 'error: ' in err:
            err = err[err.index('error: '):]
        return code, out, err

    return run


# ---------------------------------------------------------------------------
# killed during a save, then resumed
# ---------------------------------------------------------------------------

def test_killed_while_saving_resumes_from_previous_checkpoint_exactly(
        setup, run_script):
    work = setup['root'] / 'killed'
    work.mkdir()
    # in a fork of the tool server, or a process with CONVSEG_TEST_FORK=0
    proc = run_script(TRAIN, setup['config'], '--work-dir', work,
                      background=True, start_new_session=True)

    def output() -> str:
        if hasattr(proc, 'output'):
            return proc.output()[-3000:]
        return 'its output is in the process\'s pipes (CONVSEG_TEST_FORK=0)'

    # The checkpoint of iteration 4 goes through this temporary file; as a
    # FIFO it holds the writer inside the save until we have read from it.
    temporary = work / f'.iter_4.pth.{proc.pid}.tmp'
    os.mkfifo(temporary)
    reader = os.open(temporary, os.O_RDONLY | os.O_NONBLOCK)
    received = b''
    deadline = time.monotonic() + 500
    try:
        while not received:
            assert proc.poll() is None, output()
            assert time.monotonic() < deadline, 'no save of iteration 4'
            if select.select([reader], [], [], 0.5)[0]:
                received = os.read(reader, 65536)
                if not received:
                    time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-write of iter_4.pth
        proc.wait(timeout=60)
    finally:
        os.close(reader)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert received.startswith(b'PK')  # torch.save's zip had begun
    assert not (work / 'iter_4.pth').exists()
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert is_complete_checkpoint(work / 'iter_2.pth')
    assert find_resume_checkpoint(work) == str(work / 'iter_2.pth')

    resumed = run_script(TRAIN, setup['config'], '--work-dir', work,
                         '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert 'resumed epoch: 0, iter: 2' in resumed.stdout
    expected = weights(setup['final'])
    got = weights(work / f'iter_{MAX_ITERS}.pth')
    assert list(got) == list(expected)
    differing = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert differing == []
    # the stale temporary file went away when iter_4.pth was saved again
    assert not temporary.exists()


# ---------------------------------------------------------------------------
# non-finite loss
# ---------------------------------------------------------------------------

def test_nan_loss_stops_naming_iteration_and_files(setup, run_script):
    work = setup['root'] / 'nan'
    result = run_script(
        TRAIN, setup['config'], '--work-dir', work, '--cfg-options',
        'model.decode_head.loss_decode.loss_weight=nan',
        'default_hooks.checkpoint.interval=1')
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    # the first batch: InfiniteSampler's permutation from the seed, over the
    # dataset's files in sorted order
    names = sorted(os.listdir(os.path.join(setup['data_root'], 'images',
                                           'training')))
    order = torch.randperm(len(names),
                           generator=torch.Generator().manual_seed(0))
    files = []
    for i in order[:2].tolist():
        stem = os.path.splitext(names[i])[0]
        files += [os.path.join(setup['data_root'], 'images', 'training',
                               names[i]),
                  os.path.join(setup['data_root'], 'annotations', 'training',
                               stem + '.png')]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith('error: non-finite loss at iteration 1: '
                              'loss=nan, decode.loss_ce=nan. ')
    assert f'The batch held these files: {", ".join(files)}.' in message
    assert 'the last checkpoint is none (no checkpoint yet)' in message
    assert not [p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))]
    assert not (work / 'last_checkpoint').exists()


# ---------------------------------------------------------------------------
# the allow-list covers what a real run writes
# ---------------------------------------------------------------------------

def test_real_checkpoint_needs_only_allow_listed_globals(setup, run_script):
    # in a fresh interpreter, without convseg's allow-list registered
    listed = run_script(
        '-c', 'import json, sys, torch; print(json.dumps(torch.serialization.'
        'get_unsafe_globals_in_checkpoint(sys.argv[1])))', setup['final'])
    assert listed.returncode == 0, listed.stderr
    needed = set(json.loads(listed.stdout))
    allowed = {entry[1] if isinstance(entry, tuple) else
               f'{entry.__module__}.{entry.__qualname__}'
               for entry in checkpoint_reading.checkpoint_safe_globals()}
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= allowed, needed - allowed
    checkpoint = checkpoint_reading.load_checkpoint_file(str(setup['final']))
    assert set(checkpoint) >= {'state_dict', 'optimizer', 'param_schedulers',
                               'message_hub', 'random_state'}


# ---------------------------------------------------------------------------
# checkpoint safety in every tool
# ---------------------------------------------------------------------------

class Trap:
    """Unpickling this creates a marker file: what a malicious file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_malicious_checkpoint_is_refused_everywhere(setup, tmp_path,
                                                    run_in_process):
    marker = tmp_path / 'code_ran'
    checkpoint = torch.load(setup['final'], weights_only=True)
    checkpoint['meta']['trap'] = Trap(str(marker))
    evil = tmp_path / 'evil.pth'
    torch.save(checkpoint, evil)
    image = os.path.join(setup['data_root'], 'images', 'validation',
                         'ADE_val_00000001.jpg')
    refusal = f'refusing to load checkpoint {evil}: it holds a pickled ' \
        'object (io.open)'
    runs = {
        'test': (TEST, [setup['config'], evil, '--work-dir', tmp_path / 't']),
        'resume': (TRAIN, [setup['config'], '--resume', evil, '--work-dir',
                           tmp_path / 'r']),
        'convert': (CONVERT, [evil, tmp_path / 'converted.pth']),
        'demo': (DEMO, [image, setup['config'], evil, '--out-dir',
                        tmp_path / 'demo']),
    }
    for name, (script, args) in runs.items():
        code, out, err = run_in_process(script, args)
        assert code == 1, (name, out[-2000:], err)
        assert err.startswith(f'error: {refusal}'), (name, err)
        assert not marker.exists(), name
    assert not (tmp_path / 'converted.pth').exists()
    # the file really is malicious: full unpickling runs its code
    with checkpoint_reading.unsafe_checkpoint_loading():
        checkpoint_reading.load_checkpoint_file(str(evil))
    assert marker.exists()


def test_unsafe_load_opt_in_loads_a_trusted_file(setup, tmp_path,
                                                 run_in_process):
    checkpoint = torch.load(setup['final'], weights_only=True)
    checkpoint['meta']['args'] = argparse.Namespace(lr=0.01)
    trusted = tmp_path / 'trusted.pth'
    torch.save(checkpoint, trusted)
    args = [setup['config'], trusted, '--work-dir', tmp_path / 'w']
    code, _, err = run_in_process(TEST, args)
    assert code == 1
    assert err.startswith(f'error: refusing to load checkpoint {trusted}: '
                          'it holds a pickled object (argparse.Namespace)')
    assert 'pass --unsafe-load' in err
    code, out, err = run_in_process(TEST, args + ['--unsafe-load'])
    assert code == 0, out[-2000:] + err
    assert f'{trusted}: aAcc: ' in out and ' mIoU: ' in out
    assert os.environ.get(checkpoint_reading.UNSAFE_LOAD_ENV) is None


# ---------------------------------------------------------------------------
# config and checkpoint mistakes
# ---------------------------------------------------------------------------

def test_resume_with_other_num_classes_names_both(setup, tmp_path,
                                                  run_in_process):
    checkpoint = setup['work'] / 'iter_2.pth'
    code, _, err = run_in_process(TRAIN, [
        setup['config'], '--resume', checkpoint, '--work-dir', tmp_path,
        '--cfg-options', 'model.decode_head.num_classes=19'])
    assert code == 1
    assert err.strip() == (
        f'error: checkpoint {checkpoint} was trained for 150 classes '
        '(decode_head.conv_seg.weight has 150 outputs), but the model\'s '
        'decode_head has num_classes=19. Set model.decode_head.num_classes='
        '150 (with the dataset the checkpoint was trained on), or start from '
        "its backbone only: model.backbone.init_cfg=dict(type='Pretrained', "
        "prefix='backbone.', checkpoint=...).")


def test_test_tool_with_other_num_classes_names_both(setup, tmp_path,
                                                     run_in_process):
    code, _, err = run_in_process(TEST, [
        setup['config'], setup['final'], '--work-dir', tmp_path,
        '--cfg-options', 'model.decode_head.num_classes=19',
        'model.auxiliary_head.num_classes=19'])
    assert code == 1
    assert err.startswith(
        f'error: checkpoint {setup["final"]} was trained for 150 classes '
        '(decode_head.conv_seg.weight has 150 outputs), but the model\'s '
        'decode_head has num_classes=19.')


def test_test_tool_tta_without_tta_pipeline_names_the_key(setup, tmp_path,
                                                         run_in_process):
    code, _, err = run_in_process(TEST, [
        setup['config'], setup['final'], '--tta', '--work-dir', tmp_path,
        '--cfg-options', 'tta_pipeline=None'])
    assert code == 1
    assert err == (
        f"error: {setup['config']} has no tta_pipeline (the test pipeline "
        'with a TestTimeAug step that lists the views (scales, flips)), '
        'which --tta needs: add one (configs/_base_/default_runtime.py and '
        'configs/_base_/datasets/ade20k.py have examples), or test without '
        '--tta.\n')
    assert not list(tmp_path.glob('*_metrics.json'))


def test_resume_into_another_arch_is_refused(setup, tmp_path, run_in_process):
    checkpoint = setup['work'] / 'iter_2.pth'
    code, _, err = run_in_process(TRAIN, [
        setup['config'], '--resume', checkpoint, '--work-dir', tmp_path,
        '--cfg-options', 'model.backbone.depths=[1,1,2,1]'])
    assert code == 1
    assert err.startswith(
        f'error: checkpoint {checkpoint} looks like an unnamed ConvNeXt '
        '(depths (1, 1, 1, 1), dims (8, 16, 32, 64)')
    assert 'but the model is an unnamed ConvNeXt (depths (1, 1, 2, 1)' in err


def test_unknown_backbone_argument(setup, tmp_path, run_in_process):
    code, _, err = run_in_process(TRAIN, [
        setup['config'], '--work-dir', tmp_path, '--cfg-options',
        'model.backbone.drop_path=0.1'])
    assert code == 1
    assert err.startswith(
        "error: model.backbone.drop_path: ConvNeXt has no argument "
        "'drop_path'. Did you mean 'drop_path_rate'? It accepts: arch, "
        'in_channels, depths, dims, drop_path_rate, ')


def test_missing_dataset_stops_training_with_layout(setup, tmp_path,
                                                    run_in_process):
    missing = tmp_path / 'ADEChallengeData2016'
    code, _, err = run_in_process(TRAIN, [
        setup['config'], '--work-dir', tmp_path / 'w', '--cfg-options',
        f'train_dataloader.dataset.data_root={missing}'])
    assert code == 1
    assert err.startswith(
        'error: the dataset is missing or incomplete:\n'
        f'  - train: data root {missing} does not exist.\n'
        'train_dataloader.dataset (ADE20KDataset) expects:\n'
        f'    {missing}/images/training/**/*.jpg  (images)\n')
    assert 'ADEChallengeData2016.zip' in err
    assert not os.path.exists(tmp_path / 'w')


def test_check_dataset_tool(setup, tmp_path, run_in_process):
    code, out, _ = run_in_process(CHECK, [setup['config']])
    assert (code, out) == (0, 'train: OK\nval: the config has no '
                           'val_dataloader\n')
    label = os.path.join(setup['data_root'], 'annotations', 'validation',
                         'ADE_val_00000002.png')
    os.rename(label, label + '.moved')
    try:
        code, out, err = run_in_process(CHECK, [setup['config'], '--split',
                                                'test'])
    finally:
        os.rename(label + '.moved', label)
    image = os.path.join(setup['data_root'], 'images', 'validation',
                         'ADE_val_00000002.jpg')
    assert code == 1
    assert out == (f'test: missing_label: image {image} has no label '
                   f'(expected {label}).\n')
    assert err == '1 problem(s) found\n'


# ---------------------------------------------------------------------------
# a save that fails on rank 0 stops every rank
# ---------------------------------------------------------------------------

def test_failed_save_on_rank_0_stops_every_rank_with_its_message(
        setup, rank_group):
    work = setup['root'] / 'ddp_save'
    # iter_2.pth is taken by a folder: renaming the checkpoint onto it fails
    (work / 'iter_2.pth').mkdir(parents=True)
    (work / 'iter_2.pth' / 'keep').write_text('not a checkpoint')
    result = rank_group(TRAIN, setup['config'], '--launcher', 'pytorch',
                        '--work-dir', work, timeout=900)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    message = (f'error: [Errno 21] could not save checkpoint '
               f'{work}/iter_2.pth: Is a directory. Nothing incomplete was '
               'left under that name')
    # each rank prints the error itself: rank 1 did not wait in DDP's next
    # all-reduce for rank 0, which stopped
    assert text.count(message) == 2, text[-4000:]
    assert (work / 'iter_2.pth' / 'keep').read_text() == 'not a checkpoint'
