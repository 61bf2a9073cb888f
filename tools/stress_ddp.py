"""Count clean exits of 2-process DDP training and testing under CPU load.

    python tools/stress_ddp.py [--runs 20] [--busy 1] [--iters 4]
        [--work-dir DIR] [--keep]

Each run trains the quickstart model for a few iterations with
``tools/dist_train.sh CONFIG 2`` (torchrun, gloo on CPU) and evaluates the
checkpoint with ``tools/dist_test.sh --out``, while ``--busy`` processes of
our own spin on the CPU so that the ranks finish at different times. A run is
clean when both commands exit 0 and neither printed a C++ abort or a
traceback.
Prints one line per run and the count; exits 1 unless every run was clean.
Failed runs keep their output in WORK_DIR/run_NN/*.log.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'quickstart_convnext_atto_scenes.py')
#: what a process that did not exit cleanly leaves in its output
BAD_SIGNS = ('terminate called', 'Traceback', 'SIGABRT', 'Signal 6',
             'exitcode  : -', 'core dumped')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run 2-process DDP train + test N times under CPU load '
        'and count clean exits.')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--busy', type=int, default=1,
                        help='busy-looping processes started for the load')
    parser.add_argument('--iters', type=int, default=4,
                        help='training iterations per run')
    parser.add_argument('--work-dir', help='default: a temporary folder')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work dir of clean runs too')
    parser.add_argument('--timeout', type=int, default=600,
                        help='seconds allowed per command')
    return parser.parse_args()


def free_port() -> str:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def launch(cmd: list[str], log: str, timeout: int) -> tuple[int, str]:
    """Run ``cmd`` with a fresh rendezvous port; (exit code, output)."""
    env = dict(os.environ, PORT=free_port(), PYTHONUNBUFFERED='1')
    env.setdefault('OMP_NUM_THREADS', '1')
    try:
        result = subprocess.run(cmd, cwd=REPO, env=env, timeout=timeout,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        code, text = result.returncode, result.stdout
    except subprocess.TimeoutExpired as err:
        code = 124
        text = (err.stdout or b'').decode(errors='replace') + \
            f'\ntimed out after {timeout} s'
    with open(log, 'w') as f:
        f.write(text)
    return code, text


def verdict(code: int, text: str) -> str:
    """'clean', or why not."""
    if code != 0:
        return f'exit {code}'
    signs = [s for s in BAD_SIGNS if s in text]
    return f'exit 0 but printed {signs}' if signs else 'clean'


def one_run(index: int, args: argparse.Namespace, data_root: str,
            work: str) -> tuple[str, str]:
    """Train then test once; the verdicts of both."""
    run_dir = osp.join(work, f'run_{index:02d}')
    os.makedirs(run_dir, exist_ok=True)
    options = ['--cfg-options', f'train_cfg.max_iters={args.iters}',
               'train_dataloader.batch_size=2',
               f'train_dataloader.dataset.data_root={data_root}',
               f'test_dataloader.dataset.data_root={data_root}',
               f'val_dataloader.dataset.data_root={data_root}']
    code, text = launch(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), CONFIG, '2',
         '--work-dir', run_dir] + options,
        osp.join(run_dir, 'train.log'), args.timeout)
    train = verdict(code, text)
    checkpoint = osp.join(run_dir, f'iter_{args.iters}.pth')
    if not osp.isfile(checkpoint):
        return train, 'not run (no checkpoint)'
    code, text = launch(
        ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), CONFIG, checkpoint,
         '2', '--work-dir', run_dir, '--out', osp.join(run_dir, 'out')]
        + options,
        osp.join(run_dir, 'test.log'), args.timeout)
    return train, verdict(code, text)


def main() -> int:
    args = parse_args()
    sys.path.insert(0, REPO)
    from convseg.datasets import generate_scenes

    work = args.work_dir or tempfile.mkdtemp(prefix='stress_ddp_')
    os.makedirs(work, exist_ok=True)
    # an odd number of test images: the ranks get unequal shares
    data_root = generate_scenes(osp.join(work, 'data'), num_train=8,
                                num_val=5, size=(64, 64))
    busy = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
            for _ in range(args.busy)]
    clean = 0
    started = time.time()
    try:
        for i in range(args.runs):
            t0 = time.time()
            train, test = one_run(i, args, data_root, work)
            ok = train == test == 'clean'
            clean += ok
            print(f'run {i + 1:2d}/{args.runs}: train {train}, test {test} '
                  f'({time.time() - t0:.0f} s)', flush=True)
            if ok and not args.keep:
                shutil.rmtree(osp.join(work, f'run_{i:02d}'))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print(f'clean exits: {clean}/{args.runs} runs (train and test both '
          f'clean), {args.busy} busy process(es), '
          f'{time.time() - started:.0f} s; logs under {work}')
    return 0 if clean == args.runs else 1


if __name__ == '__main__':
    sys.exit(main())
