"""NCCL data parallelism with SyncBN kept as SyncBN, through torchrun and
``tools/train.py --launcher pytorch``; the checkpoint then loads on CPU.

A probe hook (written into the test's folder and imported by the config)
records, on every rank after training, the process group's backend and size
and the types of the heads' norm layers, and saves the heads' BN running
means: with SyncBN every rank normalises with the statistics of the whole
batch, so with two ranks that see different images the running means still
agree.

The probe module also arms ``faulthandler.dump_traceback_later`` in every
rank as the config imports it (before the process group starts): a rank
still running after HANG_DUMP_S seconds (a passing run takes about 40 s on
an H200) prints the stack of each of its threads to stderr and exits, so a
hang, seen once, shows where it waits.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from .gpu_helpers import REPO, check_ok, scenes_config

ITERS = 20
HANG_DUMP_S = 150
PROBE = '''
import faulthandler
import json
import os

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

faulthandler.dump_traceback_later(HANG_DUMP_S, exit=True)


@HOOKS.register_module()
class NormProbeHook(Hook):
    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \\
            else runner.model
        heads = [model.decode_head, model.auxiliary_head]
        norms = sorted({type(m).__name__ for h in heads for m in h.modules()
                        if 'Norm' in type(m).__name__})
        means = {n: m.running_mean.cpu() for n, m in
                 model.decode_head.named_modules()
                 if hasattr(m, 'running_mean')}
        rank = dist.get_rank()
        torch.save(means, os.path.join(runner.work_dir, f'means_{rank}.pt'))
        with open(os.path.join(runner.work_dir, f'probe_{rank}.json'),
                  'w') as f:
            json.dump(dict(backend=dist.get_backend(),
                           world_size=dist.get_world_size(),
                           norms=norms), f)
'''.replace('HANG_DUMP_S', str(HANG_DUMP_S))

CPU_LOAD = '''
import sys
import torch
import convseg
from convseg.apis import inference_labels, init_model
config, checkpoint, image, labels_file = sys.argv[1:]
assert not torch.cuda.is_available()
model = init_model(config, checkpoint, device='cpu')
saved = torch.load(checkpoint, map_location='cpu',
                   weights_only=False)['state_dict']
ours = {k: v for k, v in model.state_dict().items() if k in saved}
diff = max((ours[k].float() - saved[k].float()).abs().max().item()
           for k in ours if 'num_batches_tracked' not in k)
labels = inference_labels(model, image)
print('LOADED', len(ours), len(saved), diff)
torch.save(torch.as_tensor(labels), labels_file)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize('ranks', [
    pytest.param(1, marks=pytest.mark.gpu(nccl=True)),
    pytest.param(2, marks=pytest.mark.gpu(nccl=True, gpus=2)),
])
def test_nccl_ddp_keeps_syncbn_and_loads_on_cpu(tmp_path, scenes, run_script,
                                                ranks: int) -> None:
    (tmp_path / 'norm_probe.py').write_text(PROBE)
    config = scenes_config(
        tmp_path / 'ddp.py', scenes,
        custom_imports=dict(imports=['convseg', 'norm_probe'],
                            allow_failed_imports=False),
        custom_hooks=[dict(type='NormProbeHook')],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=ITERS,
                       val_interval=ITERS),
        param_scheduler=[],
        default_hooks=dict(checkpoint=dict(interval=ITERS)))
    work = tmp_path / 'work'
    # the config imports norm_probe from the test's folder
    path = [str(tmp_path), REPO] + [p for p in [os.environ.get('PYTHONPATH')]
                                    if p]
    probe_path = dict(PYTHONPATH=os.pathsep.join(path))
    check_ok(run_script(
        '-m', 'torch.distributed.run', f'--nproc_per_node={ranks}',
        f'--master_port={free_port()}', 'tools/train.py', config,
        '--launcher', 'pytorch', '--work-dir', work, env=probe_path))

    for rank in range(ranks):
        probe = json.loads((work / f'probe_{rank}.json').read_text())
        assert probe == dict(backend='nccl', world_size=ranks,
                             norms=['SyncBatchNorm'])
    means = [torch.load(work / f'means_{r}.pt') for r in range(ranks)]
    assert means[0] and all(m.keys() == means[0].keys() for m in means)
    for other in means[1:]:
        for name, value in means[0].items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=1e-6)

    # the checkpoint (CUDA tensors, SyncBN keys) loads where no GPU is seen
    checkpoint = work / f'iter_{ITERS}.pth'
    image = sorted(Path(scenes).glob('images/validation/*.jpg'))[0]
    labels_file = tmp_path / 'cpu_labels.pt'
    output = check_ok(run_script('-c', CPU_LOAD, config, checkpoint, image,
                                 labels_file,
                                 env=dict(probe_path,
                                          CUDA_VISIBLE_DEVICES='')))
    line = next(x for x in output.splitlines() if x.startswith('LOADED'))
    _, matched, total, diff = line.split()
    assert int(matched) == int(total) and float(diff) == 0.0
    labels = torch.load(labels_file).numpy()
    assert labels.shape == (64, 64)
    assert np.isin(labels, np.arange(6)).all()
