"""End to end: tools/train.py, tools/test.py and tools/get_flops.py as
users run them (in forks of the suite's warm tool server), on generated data
in the ADE20K and Cityscapes layouts; training and testing as the two ranks
of a gloo process group; the command lines of the torchrun / srun launch
scripts, run with recording stand-ins for the interpreter and srun.

The model is the real experiment config with a tiny ConvNeXt (depths
(1, 1, 1, 1), dims (8, 16, 32, 64)) and slim heads, on 32-pixel crops; every
other part (layer decay, warm-up + poly schedule, SyncBN heads, sliding-window
test, evaluator, hooks) is the config's own. Numbers reported by the tools are
checked against independent computations: the released lr formula, a numpy
confusion matrix of the PNGs written by --out against the ground-truth PNGs,
and parameter counts of a model built here.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import convseg  # noqa: F401
from convseg import checkpoint_reading
from convseg.datasets import generate_ade20k, generate_cityscapes
from mmseg.registry import MODELS
from tests.conftest import run_argv, run_ranks, script_env
from tests.helpers import confusion_miou, plain_model_tta

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
TRAIN, TEST = str(TOOLS / 'train.py'), str(TOOLS / 'test.py')
BASE_LR = 1e-3
TOTAL = 8  # the schedule's length; the runs stop before it ends

TINY = '''
_base_ = ['{base}']
crop_size = {crop}
scale = {scale}
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=None, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                  {init_cfg}),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
    auxiliary_head=dict(in_channels=32, channels=8),
    test_cfg=dict(crop_size=crop_size, stride={stride}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)),
              keep_ratio=True) for r in (1.0, 1.5)],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{data_root}', pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{data_root}', pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr={lr}))
# the released formula at a small scale: 2 warm-up iterations from 0.1
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0,
         end={total_plus_one}),
]
train_cfg = dict(max_iters={iters}, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
randomness = dict(seed=0)
'''

ADE = dict(base=REPO / 'configs' / 'upernet_convnext_t_ade20k.py',
           crop=(32, 32), scale=(64, 32), stride=(21, 21))
CITYSCAPES = dict(base=REPO / 'configs' / 'upernet_convnext_t_cityscapes.py',
                  crop=(32, 64), scale=(64, 32), stride=(21, 42))


def write_config(path, layout, data_root, iters, lr=BASE_LR, total=TOTAL,
                 init_cfg='init_cfg=None', extra=''):
    path.write_text(TINY.format(data_root=data_root, iters=iters, lr=lr,
                                total_plus_one=total + 1, init_cfg=init_cfg,
                                **layout) + extra)
    return str(path)


def env(**more):
    """:func:`tests.conftest.script_env` with no display and no proxy, and
    this Python's folder first on PATH."""
    out = {k: v for k, v in script_env().items()
           if k.lower() not in ('http_proxy', 'https_proxy', 'all_proxy',
                                'display')}
    out['PATH'] = f'{Path(sys.executable).parent}:{out.get("PATH", "")}'
    out.update(more)
    return out


def run(args, tmp, timeout=300, **more):
    """``args`` run from the repository root in :func:`env` with its own
    hub (a Python tool in a fork of the suite's tool server)."""
    return run_argv([str(a) for a in args],
                    env(TORCH_HOME=str(tmp / 'hub'), **more), timeout,
                    added_env={'TORCH_HOME': '', **more})


def ok(result):
    assert result.returncode == 0, (result.stdout[-4000:] +
                                    result.stderr[-4000:])
    return result.stdout + result.stderr


def expected_lr(t):
    """The schedule's lr at iteration t (0-based): poly x linear warm-up."""
    warmup = 0.1 + 0.9 * t / 2 if t < 2 else 1.0
    return BASE_LR * (1 - t / TOTAL) * warmup


def logged_lrs(text):
    """{iteration: (head_lr, stage1_lr)} from the training log lines."""
    found = re.findall(
        r'Iter\(train\) \[\s*(\d+)/\d+\].*? head_lr: (\S+) stage1_lr: (\S+)',
        text)
    return {int(i): (float(h), float(s)) for i, h, s in found}


def read_checkpoint(path):
    return checkpoint_reading.load_checkpoint_file(str(path),
                                                   map_location='cpu')


def ade20k_pairs(out_dir, ann_dir):
    """(prediction, ground truth) in 0..149 / 255 from ADE20K-id PNGs."""
    pairs = []
    names = sorted(os.listdir(ann_dir))
    assert sorted(os.listdir(out_dir)) == names
    for name in names:
        pred = np.array(Image.open(out_dir / name)).astype(np.int64)
        assert pred.min() >= 1 and pred.max() <= 150  # ADE20K's own ids
        gt = np.array(Image.open(ann_dir / name)).astype(np.int64)
        gt = np.where(gt == 0, 255, gt - 1)  # reduce_zero_label
        pairs.append((pred - 1, gt))
    return pairs


def cityscapes_pairs(out_dir, gt_dir):
    """(prediction, ground truth) in trainIds from labelId PNGs."""
    from cityscapesscripts.helpers.labels import labels
    to_train = np.full(256, 255, np.int64)
    for label in labels:
        if label.id >= 0 and 0 <= label.trainId < 255:
            to_train[label.id] = label.trainId
    pairs = []
    for path in sorted(out_dir.iterdir()):
        stem = path.name[:-len('_leftImg8bit.png')]
        city = stem.split('_')[0]
        pred = np.array(Image.open(path))
        assert set(np.unique(pred)) <= set(np.flatnonzero(to_train != 255))
        gt = np.array(Image.open(
            gt_dir / city / f'{stem}_gtFine_labelTrainIds.png'))
        pairs.append((to_train[pred], gt.astype(np.int64)))
    return pairs


def check_results(work_dir, stem, reference):
    """The JSON and CSV test.py wrote agree with the numpy reference."""
    miou, a_acc, m_acc, iou = reference
    written = json.loads((work_dir / f'{stem}_metrics.json').read_text())
    assert (written['mIoU'], written['aAcc'], written['mAcc']) == (
        miou, a_acc, m_acc)
    per_class = [row['IoU'] for row in written['per_class']]
    assert [v is None for v in per_class] == list(np.isnan(iou))
    np.testing.assert_allclose(
        [v for v in per_class if v is not None], iou[~np.isnan(iou)],
        atol=1e-3)
    csv_lines = (work_dir / f'{stem}_per_class.csv').read_text().splitlines()
    assert csv_lines[0] == 'class,IoU,Acc'
    assert len(csv_lines) == 1 + len(iou)
    return written


# ---------------------------------------------------------------------------
# ADE20K: train, resume, test
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ade')
    data_root = generate_ade20k(str(tmp / 'data'), num_train=4, num_val=3,
                                size=(48, 64))
    config = write_config(tmp / 'tiny_ade20k.py', ADE, data_root, iters=4)
    work = tmp / 'work'
    trained = ok(run([sys.executable, TRAIN, config, '--work-dir', work],
                     tmp))
    return dict(tmp=tmp, data_root=Path(data_root), config=config, work=work,
                log=trained)


def test_train_logs_head_and_stage1_lr_of_the_schedule(ade):
    lrs = logged_lrs(ade['log'])
    assert sorted(lrs) == [1, 2, 3, 4]
    for iteration, (head, stage1) in lrs.items():
        assert head == pytest.approx(expected_lr(iteration - 1), rel=1e-3)
        # layer decay 0.9, num_layers 6: stage 1 is layer 1 of 0..7
        assert stage1 == pytest.approx(head * 0.9**6, rel=1e-3)
    assert ' eta: ' in ade['log']
    # one CPU process: SyncBN is reverted, AMP falls back to fp32
    assert 'all SyncBatchNorm (SyncBN) layers in the model will be ' \
        'automatically reverted' in ade['log']
    assert 'training in fp32 with OptimWrapper instead' in ade['log']
    checkpoint = read_checkpoint(ade['work'] / 'iter_4.pth')
    assert checkpoint['meta']['iter'] == 4


@pytest.fixture(scope='module')
def ade_resumed(ade):
    log = ok(run([sys.executable, TRAIN, ade['config'], '--work-dir',
                  ade['work'], '--resume', '--cfg-options',
                  'train_cfg.max_iters=6'], ade['tmp']))
    return dict(ade, log=log)


def test_resume_continues_iterations_and_schedule(ade_resumed):
    log, work = ade_resumed['log'], ade_resumed['work']
    assert 'resumed epoch: 0, iter: 4' in log
    lrs = logged_lrs(log)
    assert sorted(lrs) == [5, 6]
    for iteration, (head, _) in lrs.items():
        assert head == pytest.approx(expected_lr(iteration - 1), rel=1e-3)
    checkpoint = read_checkpoint(work / 'iter_6.pth')
    assert checkpoint['meta']['iter'] == 6
    # the heads' groups train at the full rate
    lr = max(g['lr'] for g in checkpoint['optimizer']['param_groups'])
    assert lr == pytest.approx(expected_lr(6), rel=1e-9)


def test_test_tool_miou_equals_numpy_on_out_pngs(ade_resumed):
    tmp, work = ade_resumed['tmp'], ade_resumed['work']
    out, show = tmp / 'out', tmp / 'show'
    # evaluated on the training images, which the model has begun to fit
    text = ok(run([
        sys.executable, TEST, ade_resumed['config'], work / 'iter_6.pth',
        '--work-dir', work, '--out', out, '--show-dir', show,
        '--cfg-options', 'test_dataloader.dataset.data_prefix.img_path='
        'images/training', 'test_dataloader.dataset.data_prefix.'
        'seg_map_path=annotations/training'], tmp))
    reference = confusion_miou(
        ade20k_pairs(out, ade_resumed['data_root'] / 'annotations' /
                     'training'), 150)
    written = check_results(work, 'iter_6', reference)
    assert f'iter_6.pth: aAcc: {written["aAcc"]:.2f}  mIoU: ' \
        f'{written["mIoU"]:.2f}  mAcc: {written["mAcc"]:.2f}' in text
    # the per-class table
    assert re.search(r'\|\s+Class\s+\|\s+IoU\s+\|\s+Acc\s+\|', text)
    assert '] 4/4, ' in text and 'ETA:' in text  # the progress bar
    drawn = sorted(p.name for p in show.rglob('*.png'))
    assert len(drawn) == 4 and all(n.startswith('test_ADE_train_')
                                   for n in drawn)


def test_offline_pretrained_url_stops_with_a_message(ade):
    # the config keeps the experiment's init_cfg (the official ImageNet
    # weights); the URL given here cannot be reached
    config = write_config(ade['tmp'] / 'tiny_pretrained.py', ADE,
                          ade['data_root'], iters=4, init_cfg='')
    url = 'http://127.0.0.1:9/convnext_tiny_1k_224.pth'
    result = run([sys.executable, TRAIN, config, '--work-dir',
                  ade['tmp'] / 'offline', '--cfg-options',
                  f'model.backbone.init_cfg.checkpoint={url}'], ade['tmp'])
    assert result.returncode == 1
    assert 'Traceback' not in result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f'error: could not download checkpoint {url} ')
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message


def tiny_upernet_flops(height: int, width: int, dims=(8, 16, 32, 64),
                       channels: int = 16, classes: int = 150,
                       scales=(1, 2, 3, 6)) -> int:
    """The tiny model's inference FLOPs counted by hand, by fvcore's rules:
    a multiply-add per conv / linear weight use (no bias), 5 per element of
    a LayerNorm, 2 of an eval BatchNorm, 4 per output element of a bilinear
    resize, 1 per input element of an adaptive average pool; activations and
    additions are not counted."""
    bilinear, layer_norm, batch_norm = 4, 5, 2
    sizes = [(height // 4 >> i, width // 4 >> i) for i in range(4)]
    total, c_in = 0, 3
    for i, ((h, w), c) in enumerate(zip(sizes, dims)):
        if i:  # down-sampling: LayerNorm, then a 2x2 stride-2 conv
            total += layer_norm * c_in * 4 * h * w + h * w * c * c_in * 4
        else:  # stem: a 4x4 stride-4 conv, then LayerNorm
            total += h * w * c * c_in * 16 + layer_norm * c * h * w
        # one block: 7x7 depthwise conv, LayerNorm, C -> 4C -> C; norm{i}
        total += h * w * c * 49 + layer_norm * c * h * w + \
            2 * h * w * c * 4 * c + layer_norm * c * h * w
        c_in = c
    (h3, w3), c3 = sizes[3], dims[3]
    for s in scales:  # pyramid pooling: pool, 1x1 conv + BN, resize back
        total += c3 * h3 * w3 + s * s * (c3 * channels + batch_norm *
                                         channels)
        total += bilinear * channels * h3 * w3
    total += h3 * w3 * channels * ((c3 + len(scales) * channels) * 9 +
                                   batch_norm)
    for (h, w), c in zip(sizes[:3], dims[:3]):
        total += h * w * channels * (c + batch_norm)  # lateral 1x1 + BN
        total += bilinear * channels * h * w  # top-down resize
        total += h * w * channels * (channels * 9 + batch_norm)  # FPN conv
    h0, w0 = sizes[0]
    total += 3 * bilinear * channels * h0 * w0  # levels 1-3 to level 0
    total += h0 * w0 * channels * (4 * channels * 9 + batch_norm)
    return total + h0 * w0 * channels * classes  # conv_seg


def test_get_flops_counts_every_parameter(ade):
    text = ok(run([sys.executable, TOOLS / 'get_flops.py', ade['config'],
                   '--shape', '64', '96'], ade['tmp']))
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(ade['config']).model)
    params = int(re.search(r'^parameters: (\d+) ', text, re.M).group(1))
    assert params == sum(p.numel() for p in model.parameters())
    assert 'input: 1 x 3 x 64 x 96' in text
    flops = int(re.search(r'^FLOPs: (\d+) ', text, re.M).group(1))
    assert flops == tiny_upernet_flops(64, 96)


# ---------------------------------------------------------------------------
# Cityscapes: train, test with TTA, labelIds
# ---------------------------------------------------------------------------

def test_cityscapes_train_and_tta_test_in_label_ids(tmp_path):
    data_root = Path(generate_cityscapes(str(tmp_path / 'data'), num_train=4,
                                         num_val=2, size=(32, 64)))
    config = write_config(tmp_path / 'tiny_cityscapes.py', CITYSCAPES,
                          data_root, iters=20, lr=1e-2, total=20)
    work, out = tmp_path / 'work', tmp_path / 'out'
    ok(run([sys.executable, TRAIN, config, '--work-dir', work], tmp_path))
    text = ok(run([sys.executable, TEST, config, work / 'iter_20.pth',
                   '--work-dir', work, '--out', out, '--tta'], tmp_path))
    assert sorted(p.name for p in out.iterdir()) == [
        'frankfurt_000000_000019_leftImg8bit.png',
        'lindau_000000_000019_leftImg8bit.png']
    pairs = cityscapes_pairs(out, data_root / 'gtFine' / 'val')
    written = check_results(work, 'iter_20_tta', confusion_miou(pairs, 19))
    # street scenes are learnt in 20 iterations: better than the most common
    # class everywhere, scored by the same rule (measured: 8.79 against 2.69)
    majority = np.bincount(np.concatenate(
        [gt[gt != 255] for _, gt in pairs])).argmax()
    baseline = confusion_miou(
        [(np.full_like(gt, majority), gt) for _, gt in pairs], 19)[0]
    assert written['mIoU'] > baseline + 4, (written['mIoU'], baseline)
    assert 'SyncBatchNorm (SyncBN) layers in the model will be ' \
        'automatically reverted' in text


# ---------------------------------------------------------------------------
# two processes on CPU with torchrun (gloo)
# ---------------------------------------------------------------------------

RANK_DUMP = '''
import atexit
import os
import sys
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Each rank saves its parameters before and after training."""

    def _dump(self, runner, tag):
        model = runner.model
        model = model.module if is_model_wrapper(model) else model
        torch.save({k: v.detach().clone()
                    for k, v in model.named_parameters()},
                   os.path.join(runner.work_dir,
                                f'{tag}_rank{runner.rank}.pth'))

    def before_train(self, runner):
        self._dump(runner, 'before')

    def after_train(self, runner):
        self._dump(runner, 'after')


@atexit.register
def record_group_at_exit():
    """Whether this rank's process group was still alive at exit (in
    exit_records/ beside this module)."""
    name = os.path.basename(sys.argv[0]).replace('.py', '')
    with open(os.path.join(os.path.dirname(__file__), 'exit_records',
                           f'{name}_rank{os.environ["RANK"]}.txt'), 'w') as f:
        f.write(str(dist.is_initialized()))
'''


def test_two_process_ddp_on_cpu_trains_identical_ranks(tmp_path):
    assert shutil.which('bash')
    data_root = Path(generate_ade20k(str(tmp_path / 'data'), num_train=4,
                                     num_val=3, size=(48, 64)))
    (tmp_path / 'rank_dump.py').write_text(RANK_DUMP)
    runtime = REPO / 'configs' / '_base_' / 'default_runtime.py'
    hooks = Config.fromfile(str(runtime)).to_dict()['custom_hooks']
    config = write_config(
        tmp_path / 'tiny_ddp.py', ADE, data_root, iters=4,
        extra=(f"custom_imports = dict(imports=['rank_dump'])\n"
               f"custom_hooks = {hooks + [dict(type='RankDumpHook')]!r}\n"))
    work, out = tmp_path / 'work', tmp_path / 'out'
    records = tmp_path / 'exit_records'
    records.mkdir()
    # the ranks torchrun starts for tools/dist_train.sh and dist_test.sh
    # (their command lines: test_launch_scripts_run_python_env_or_venv_or_path),
    # each a fork of the warm tool server with torchrun's variables set
    hub = dict(TORCH_HOME=str(tmp_path / 'hub'))
    text = ok(run_ranks(TOOLS / 'train.py', config, '--launcher', 'pytorch',
                        '--work-dir', work, env=hub, python_path=(tmp_path,)))
    assert 'Distributed training: True' in text
    assert 'using BN (batch statistics per process) in its place' in text
    after = [torch.load(work / f'after_rank{r}.pth') for r in (0, 1)]
    before = torch.load(work / 'before_rank0.pth')
    assert after[0].keys() == after[1].keys() == before.keys()
    for name in after[0]:
        assert torch.equal(after[0][name], after[1][name]), name
    assert all(not torch.equal(after[0][k], before[k]) for k in before)
    saved = read_checkpoint(work / 'iter_4.pth')['state_dict']
    assert all(torch.equal(saved[k], v) for k, v in after[0].items())

    # a config naming mmseg's IoUMetric gets the same metric with files;
    # multi-scale + flip test-time augmentation on two processes
    ok(run_ranks(TOOLS / 'test.py', config, work / 'iter_4.pth',
                 '--launcher', 'pytorch', '--work-dir', work, '--out', out,
                 '--tta', '--cfg-options', 'test_evaluator.type=IoUMetric',
                 env=hub, python_path=(tmp_path,)))
    ann_dir = data_root / 'annotations' / 'validation'
    reference = confusion_miou(ade20k_pairs(out, ann_dir), 150)
    check_results(work, 'iter_4_tta', reference)
    # the written labels are those of the plain model run here at each scale
    # and flip of the config's tta_pipeline, resized back and averaged
    names = sorted(os.listdir(ann_dir))
    images = [data_root / 'images' / 'validation' / n.replace('.png', '.jpg')
              for n in names]
    written = [np.array(Image.open(out / n)).astype(np.int64) - 1
               for n in names]
    # Resize(scale, keep_ratio) of a 48x64 image: (64, 32) gives 32x43 and
    # (96, 48) leaves it 48x64
    expected = plain_model_tta(config, work / 'iter_4.pth', images,
                               sizes=[(32, 43), (48, 64)],
                               flips=(None, 'horizontal'))
    agree = np.mean([np.mean(w == e) for w, e in zip(written, expected)])
    assert agree >= 0.999  # the CPU fast path rounds differently
    assert all(len(np.unique(w)) >= 5 for w in written)
    single = plain_model_tta(config, work / 'iter_4.pth', images,
                             sizes=[(32, 43)], flips=(None,))
    assert np.mean([np.mean(w == e) for w, e in zip(written, single)]) < 0.99
    # both tools leave the process group before the interpreter shuts down
    # (left to interpreter exit, gloo's threads can abort the process)
    assert {p.name: p.read_text() for p in records.iterdir()} == {
        f'{tool}_rank{r}.txt': 'False' for tool in ('train', 'test')
        for r in (0, 1)}


# ---------------------------------------------------------------------------
# SLURM: the srun command line the script builds
# ---------------------------------------------------------------------------

def test_slurm_train_passes_the_job_to_srun(tmp_path):
    stub = tmp_path / 'bin' / 'srun'
    stub.parent.mkdir()
    record = tmp_path / 'srun_args.json'
    stub.write_text(f'#!{sys.executable}\nimport json, sys\n'
                    f'json.dump(sys.argv[1:], open({str(record)!r}, "w"))\n')
    stub.chmod(0o755)
    result = run(['bash', TOOLS / 'slurm_train.sh', 'gpu', 'convnext_t',
                  'configs/upernet_convnext_t_ade20k.py', '--work-dir',
                  'work_dirs/t'], tmp_path, GPUS='16', GPUS_PER_NODE='8',
                 SRUN_ARGS='--time=72:00:00 --exclusive', PYTHON='python',
                 PATH=f'{stub.parent}:{os.environ["PATH"]}')
    ok(result)
    assert json.loads(record.read_text()) == [
        '-p', 'gpu', '--job-name=convnext_t', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        '--time=72:00:00', '--exclusive', 'python', '-u', TRAIN,
        'configs/upernet_convnext_t_ade20k.py', '--launcher', 'slurm',
        '--work-dir', 'work_dirs/t']


# ---------------------------------------------------------------------------
# the interpreter the launch scripts start
# ---------------------------------------------------------------------------

def test_launch_scripts_run_python_env_or_venv_or_path(tmp_path):
    """$PYTHON, else the repository's venv ($CONVSEG_VENV, default .venv),
    else `python` on PATH: copies of the scripts in a scratch repository run
    recording stubs in each place."""
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    for name in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
                 'python_env.sh'):
        shutil.copy(TOOLS / name, repo / 'tools' / name)
    record = tmp_path / 'record.txt'

    def stub(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{what} $*" >> "{record}"\n')
        path.chmod(0o755)
        return path

    stub(tmp_path / 'bin' / 'python', 'path-python')
    stub(tmp_path / 'bin' / 'srun', 'srun')
    custom = stub(tmp_path / 'custom' / 'python3.11', 'custom-python')

    def launch(script, *args, **more):
        base = {k: v for k, v in os.environ.items()
                if k not in ('PYTHON', 'CONVSEG_VENV')}
        base.update(PATH=f'{tmp_path / "bin"}:/usr/bin:/bin', **more)
        record.write_text('')
        result = subprocess.run(['bash', str(repo / 'tools' / script),
                                 *args], env=base, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return record.read_text().split()

    train = ('dist_train.sh', 'c.py', '2')
    assert launch(*train)[:3] == [
        'path-python', '-m', 'torch.distributed.run']
    assert launch('dist_train.sh', 'c.py', '2', '--work-dir', 'w',
                  NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1') == [
        'path-python', '-m', 'torch.distributed.run', '--nnodes=2',
        '--node_rank=1', '--master_addr=10.0.0.1', '--master_port=29500',
        '--nproc_per_node=2', str(repo / 'tools' / 'train.py'), 'c.py',
        '--launcher', 'pytorch', '--work-dir', 'w']
    stub(repo / '.venv' / 'bin' / 'python', 'venv-python')
    assert launch(*train)[:3] == [
        'venv-python', '-m', 'torch.distributed.run']
    assert launch('dist_test.sh', 'c.py', 'x.pth', '2', '--tta',
                  PORT='29600') == [
        'venv-python', '-m', 'torch.distributed.run', '--nnodes=1',
        '--node_rank=0', '--master_addr=127.0.0.1', '--master_port=29600',
        '--nproc_per_node=2', str(repo / 'tools' / 'test.py'), 'c.py',
        'x.pth', '--launcher', 'pytorch', '--tta']
    srun = launch('slurm_train.sh', 'gpu', 'job', 'c.py')
    assert srun[0] == 'srun'
    assert srun[srun.index('--kill-on-bad-exit=1') + 1:][:2] == [
        str(repo / '.venv' / 'bin' / 'python'), '-u']
    stub(repo / 'envs' / 'cs' / 'bin' / 'python', 'convseg-venv-python')
    assert launch(*train, CONVSEG_VENV='envs/cs')[0] == \
        'convseg-venv-python'
    for script_args in (train, ('dist_test.sh', 'c.py', 'x.pth', '2')):
        assert launch(*script_args, PYTHON=str(custom))[0] == \
            'custom-python'
    srun = launch('slurm_train.sh', 'gpu', 'job', 'c.py', PYTHON=str(custom))
    assert str(custom) in srun
