"""Training speed on the CPU for the fixed configuration of the speed issue (issue 6, item 3), or
(--config demo-source) for the demo source's training, optionally with --cpu-bf16 beside it.

res 32, z_dim = w_dim = 128, 2 mapping layers, channel_base 4096, channel_max 128, 'skip' G,
'resnet' D, batch 8, augpipe bgc with p fixed at 0.2, lazy regularisation (R1 gamma
0.0002 * res^2 / batch every 16 iterations, path length every 4). NVIDIA's own networks and loss
take about 0.53 s per iteration for it on the 2-core CPU machines (measured once with NVIDIA's
code; `--nvidia` measures it again).

    python benchmarks/train_speed.py                        # ours only
    python benchmarks/train_speed.py --nvidia PATH          # also NVIDIA's code, interleaved
    python benchmarks/train_speed.py --threads 1 ...        # robust on a busy machine
    python benchmarks/train_speed.py --cpu-bf16             # also ours with --cpu-bf16

--nvidia PATH is a checkout of NVlabs/stylegan2-ada-pytorch (never shipped; imported only by the
worker process that measures it): its networks, AugmentPipe and StyleGAN2Loss are driven by the
phase schedule of its training loop. --baseline PATH measures another gda tree the same way.

Each implementation runs in its own worker process (process-wide settings such as the malloc
tuning of our training loop stay with it), warms up for 16 iterations (every regularisation phase
runs), then the workers take turns timing blocks of 16 iterations (one full Gmain/Greg/Dmain/Dreg
cycle), so all see the same background load. Figures are medians over blocks; ratios are medians
over adjacent pairs of blocks. CPU time per iteration and the CPU that other processes used
meanwhile are recorded too: on a shared machine with 2 threads per process, wall times mostly
measure the other jobs (an OpenMP thread that loses its core stalls every parallel op).
Writes benchmarks/results/train_speed.json and .md (or --out).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import psutil
import torch

from machine_info import cpu_model  # a sibling module (the script's folder is on sys.path)
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_config import resolve
from stylegan2_ada.training_loop import TrainingLoop
from stylegan2_ada.training_options import TrainingOptions

RES, BATCH, BLOCK = 32, 8, 16
NVIDIA_REFERENCE = 0.53   # s/iter, NVIDIA's own code on this config and machine (measured once)
CONFIG = ('res 32, z/w 128, 2 mapping layers, channel_base 4096, channel_max 128, skip G, '
          'resnet D, batch 8, bgc p=0.2 fixed, lazy R1 (gamma 0.0002*res^2/batch, every 16) '
          'and path length (every 4)')
NET_KWARGS = dict(channel_base=4096, channel_max=128, num_fp16_res=4, conv_clamp=256)
GAMMA = 0.0002 * RES ** 2 / BATCH
# --config: the speed issue's (above; NVIDIA's code can run it too) or the demo source's training
# (examples/demo/train_source.sh: --cfg cifar --cbase 2048 --cmax 128 --zdim 256 --batch 32).
CONFIGS = {
    'issue6': dict(describe=CONFIG, batch=BATCH, zdim=128, net=NET_KWARGS, d_architecture='resnet',
                   mbstd=4, cfg='auto', gamma=GAMMA, p=0.2),
    'demo-source': dict(describe='res 32, z/w 256, 2 mapping layers, channel_base 2048, channel_max '
                                 '128, skip G, orig D with minibatch-std groups of 32, batch 32, '
                                 'bgc p=0.14 fixed, lazy R1 (gamma 0.01, every 16), no path length, '
                                 'no style mixing (NVIDIA\'s cifar preset at the demo source\'s width)',
                        batch=32, zdim=256, net=dict(NET_KWARGS, channel_base=2048),
                        d_architecture='orig', mbstd=32, cfg='cifar', gamma=0.01, p=0.14),
}
# Ratios reported: ours (float32) over each other implementation measured, and how the report names it.
RATIOS = [('ours_over_nvidia', 'nvidia', "NVIDIA's"), ('ours_over_baseline', 'baseline', 'the baseline'),
          ('ours_over_ours-bf16', 'ours-bf16', 'ours with --cpu-bf16')]
IMPLEMENTATIONS = {'ours': 'ours (gda)', 'nvidia': 'NVIDIA stylegan2-ada-pytorch',
                   'baseline': 'gda baseline', 'ours-bf16': 'ours, --cpu-bf16'}


class RandomImages:
    """An in-memory dataset: the benchmark measures training, not PNG decoding."""

    def __init__(self, count=256):
        self.images = (np.random.RandomState(0).rand(count, 3, RES, RES) * 255).astype(np.uint8)

    def __len__(self):
        return len(self.images)

    def get_label(self, idx):
        return np.zeros([0], np.float32)

    def __getitem__(self, idx):
        return self.images[idx], self.get_label(idx)


def build_ours(run_dir, config, cpu_bf16=False):
    """Our TrainingLoop on CONFIGS[config] (the fp16 blocks in bfloat16 with `cpu_bf16`); returns
    its step function."""
    c = CONFIGS[config]
    torch.manual_seed(0)
    G = Generator(z_dim=c['zdim'], c_dim=0, w_dim=c['zdim'], img_resolution=RES, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(architecture='skip', **c['net']))
    D = Discriminator(c_dim=0, img_resolution=RES, img_channels=3,
                      architecture=c['d_architecture'],
                      epilogue_kwargs=dict(mbstd_group_size=c['mbstd']), **c['net'])
    opts, _ = resolve(c['cfg'], RES, dict(batch=c['batch']))
    opts.update(iters=None, kimg=None, batch_gpu=c['batch'], seed=0, aug='fixed', augpipe='bgc',
                p=c['p'], gamma=c['gamma'], tick=1e9, snap=0)
    if cpu_bf16:   # only when asked: a --baseline tree from before the option has no such field
        opts['cpu_bf16'] = True
    loop = TrainingLoop(run_dir, G, D, RandomImages(), TrainingOptions(**opts),
                        log=lambda *a, **k: None)
    return loop.step


def build_nvidia(path):
    """NVIDIA's G, D, AugmentPipe and StyleGAN2Loss driven by its training loop's schedule.

    Only the loop's per-iteration work is reproduced (phases, lazy-regularisation Adam, nan_to_num,
    G_ema); fp16 is off because NVIDIA's CPU path would run half-precision convolutions (ours
    computes in fp32 on the CPU). Returns its step function.
    """
    sys.path.insert(0, str(path))
    warnings.filterwarnings('ignore', message='.*gradfix not supported.*')
    import copy
    from training.augment import AugmentPipe as NvAugmentPipe
    from training.loss import StyleGAN2Loss as NvLoss
    from training.networks import Discriminator as NvD
    from training.networks import Generator as NvG
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
    conv2d_gradfix.enabled = True       # as NVIDIA's training loop (no effect on the CPU)
    grid_sample_gradfix.enabled = True

    torch.manual_seed(0)
    kwargs = dict(NET_KWARGS, num_fp16_res=0)
    G = NvG(z_dim=128, c_dim=0, w_dim=128, img_resolution=RES, img_channels=3,
            mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(architecture='skip', **kwargs))
    D = NvD(c_dim=0, img_resolution=RES, img_channels=3, architecture='resnet',
            epilogue_kwargs=dict(mbstd_group_size=4), **kwargs)
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    pipe = NvAugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                         brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    pipe.train().requires_grad_(False).p.copy_(torch.as_tensor(0.2))
    loss = NvLoss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
                  augment_pipe=pipe, r1_gamma=GAMMA, style_mixing_prob=0.9, pl_weight=2)
    opts, _ = resolve('auto', RES, dict(batch=BATCH))
    phases = []
    for module, interval in [(G, 4), (D, 16)]:
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=opts['lr'] * ratio,
                               betas=(0.0, 0.99 ** ratio), eps=1e-8)
        name = 'G' if module is G else 'D'
        phases += [(name + 'main', module, opt, 1), (name + 'reg', module, opt, interval)]
    data = RandomImages()
    state = dict(batch_idx=0, cur_nimg=0)

    def step():
        idx = state['batch_idx']
        rows = np.random.randint(len(data), size=BATCH)
        real = torch.from_numpy(data.images[rows]).to(torch.float32) / 127.5 - 1
        real_c = torch.zeros([BATCH, 0])
        all_z = torch.randn([len(phases) * BATCH, 128]).split(BATCH)
        for (name, module, opt, interval), gen_z in zip(phases, all_z):
            if idx % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=name, real_img=real, real_c=real_c, gen_z=gen_z,
                                      gen_c=real_c, sync=True, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
        ema_nimg = min(opts['ema_kimg'] * 1000, state['cur_nimg'] * opts['ema_rampup'])
        beta = 0.5 ** (BATCH / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        state['cur_nimg'] += BATCH
        state['batch_idx'] += 1
    return step


class Worker:
    """One implementation in its own process (process-wide settings never leak between them),
    built and warmed up once, then timed block by block on request."""

    def __init__(self, impl, args):
        command = [sys.executable, __file__, '--worker', impl, '--threads', str(args.threads),
                   '--config', args.config]
        if args.nvidia:
            command += ['--nvidia', args.nvidia]
        env = dict(os.environ)
        self.name = IMPLEMENTATIONS[impl]
        if impl == 'baseline':   # another gda tree's stylegan2_ada shadows the installed one
            env['PYTHONPATH'] = os.pathsep.join([args.baseline, env.get('PYTHONPATH', '')])
            self.name += f' ({args.baseline})'
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def ask(self, request):
        self.process.stdin.write(request + '\n')
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'the {self.name} worker died (see its error above)')
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def serve(impl, args):
    """Worker side: build, warm up, then answer 'block' (time 16 iterations) and 'profile N'."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as run_dir:
        step = (build_nvidia(args.nvidia) if impl == 'nvidia'
                else build_ours(run_dir, args.config, cpu_bf16=(impl == 'ours-bf16')))
        for _ in range(BLOCK):
            step()
        print(json.dumps(dict(ready=True, pid=os.getpid(), threads=torch.get_num_threads(),
                              mkldnn=torch.backends.mkldnn.enabled)), flush=True)
        for request in sys.stdin:
            words = request.split()
            if words[0] == 'block':
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(BLOCK):
                    step()
                answer = dict(wall=(time.perf_counter() - wall) / BLOCK,
                              cpu=(time.process_time() - cpu) / BLOCK)
            else:
                answer = dict(table=profile(step, BLOCK, int(words[1])))
            print(json.dumps(answer), flush=True)


def profile(step, iters, top):
    """torch.profiler table of the ops that take most CPU time over `iters` iterations."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            step()
    return prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=top)


class LoadMeter:
    """CPU time that processes other than the workers used while we measured, in busy cores."""

    def __init__(self, pids):
        self.processes = [psutil.Process(pid) for pid in pids]

    def _workers_cpu(self):
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    def __enter__(self):
        self.start = time.perf_counter(), _busy_cpu(), self._workers_cpu()
        return self

    def __exit__(self, *exc):
        wall, busy, workers = self.start
        others = (_busy_cpu() - busy) - (self._workers_cpu() - workers)
        self.other_cores = max(others, 0.0) / (time.perf_counter() - wall)


def _busy_cpu():
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, 'irq', 0) + \
        getattr(times, 'softirq', 0)


def summarise(name, blocks, batch):
    wall = statistics.median(b['wall'] for b in blocks)
    return dict(implementation=name, sec_per_iter=round(wall, 4),
                sec_per_kimg=round(wall * 1000 / batch, 1),
                cpu_sec_per_iter=round(statistics.median(b['cpu'] for b in blocks), 4),
                blocks_sec_per_iter=[round(b['wall'], 4) for b in blocks])


def write_markdown(path, result):
    rows = [f"| {r['implementation']} | {r['sec_per_iter']:.3f} | {r['sec_per_kimg']:.1f} | "
            f"{r['cpu_sec_per_iter']:.3f} | "
            f"{min(r['blocks_sec_per_iter']):.3f}-{max(r['blocks_sec_per_iter']):.3f} |"
            for r in result['results']]
    if 'ours_over_nvidia' not in result and result['config'] == CONFIG:
        rows.append(f'| NVIDIA (offline.md, not measured here) | {NVIDIA_REFERENCE:.2f} | '
                    f'{NVIDIA_REFERENCE * 1000 / BATCH:.0f} | | |')
    lines = ['# CPU training speed', '', f"Config: {result['config']}.", '',
             '| implementation | s/iter (median) | s/kimg | CPU s/iter | 16-iteration blocks |',
             '|---|---|---|---|---|', *rows, '']
    for key, _, other in RATIOS:
        if key in result:
            lines += [f"Ours / {other} time per iteration (median over adjacent block pairs): "
                      f"{result[key]:.3f}.", '']
    if 'ours_over_nvidia' in result:
        lines += ["NVIDIA's code runs with num_fp16_res=0 (ours computes in fp32 on the CPU anyway; "
                  "its CPU path would run fp16 convolutions) and its gradfix flags set as its "
                  'training loop sets them (both ops fall back to plain PyTorch on the CPU).', '']
    lines += [f"Machine: {result['cpu']}, {result['cpus']} logical CPUs, {result['threads']} "
              f"torch thread(s) per implementation, torch {result['torch']}.",
              f"Load from other processes while measuring: {result['other_busy_cores']:.2f} busy "
              f"cores on average (load average {result['load_average'][0]:.2f} at the end).",
              f"Measured {result['date']} with `{result['command']}`.", '']
    path.write_text('\n'.join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--blocks', type=int, default=5,
                        help='timed blocks of 16 iterations per implementation (default 5)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch threads per implementation (default: torch\'s, %(default)s)')
    parser.add_argument('--nvidia', metavar='PATH',
                        help='checkout of NVlabs/stylegan2-ada-pytorch to measure beside ours')
    parser.add_argument('--baseline', metavar='PATH',
                        help='another gda tree (e.g. a `git worktree` of an older commit) to '
                             'measure beside this one')
    parser.add_argument('--config', choices=list(CONFIGS), default='issue6',
                        help='what to train: the speed issue\'s configuration (default) or the '
                             'demo source\'s (examples/demo/train_source.sh)')
    parser.add_argument('--cpu-bf16', action='store_true',
                        help='also measure ours with `gda train --cpu-bf16` (NVIDIA\'s fp16 blocks '
                             'in bfloat16)')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='also print the top-N ops of each implementation (16 iterations)')
    parser.add_argument('--out', default='benchmarks/results/train_speed.json')
    parser.add_argument('--worker', choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve(args.worker, args)
    if args.nvidia and not (pathlib.Path(args.nvidia) / 'training' / 'networks.py').is_file():
        parser.error(f'--nvidia {args.nvidia} is not a checkout of stylegan2-ada-pytorch '
                     f'(no training/networks.py there)')

    if args.nvidia and args.config != 'issue6':
        parser.error('--nvidia runs the speed issue\'s configuration only; drop --config')
    if args.baseline and not (pathlib.Path(args.baseline) / 'stylegan2_ada').is_dir():
        parser.error(f'--baseline {args.baseline} has no stylegan2_ada package')
    impls = (['ours'] + ['nvidia'] * bool(args.nvidia) + ['baseline'] * bool(args.baseline)
             + ['ours-bf16'] * args.cpu_bf16)
    workers = [Worker(impl, args) for impl in impls]
    try:
        ready = [json.loads(w.process.stdout.readline() or '{}') for w in workers]
        if not all(r.get('ready') for r in ready):
            raise SystemExit('a worker failed to start (see its error above)')
        blocks = {w.name: [] for w in workers}
        with LoadMeter([r['pid'] for r in ready]) as load:
            for _ in range(args.blocks):
                for w in workers:
                    blocks[w.name].append(w.ask('block'))
        for w in workers if args.profile else []:
            print(f'--- {w.name}\n' + w.ask(f'profile {args.profile}')['table'])
    finally:
        for w in workers:
            w.close()

    batch = CONFIGS[args.config]['batch']
    result = dict(config=CONFIGS[args.config]['describe'], batch=batch,
                  results=[summarise(name, b, batch) for name, b in blocks.items()],
                  nvidia_reference_sec_per_iter=NVIDIA_REFERENCE,
                  other_busy_cores=round(load.other_cores, 2),
                  load_average=[round(v, 2) for v in os.getloadavg()],
                  threads=ready[0]['threads'], mkldnn=ready[0]['mkldnn'],
                  cpus=os.cpu_count(), cpu=cpu_model(), torch=torch.__version__,
                  machine=platform.machine(),
                  date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
                  command='python benchmarks/train_speed.py' + ''.join(
                      f' {a}' for a in sys.argv[1:]))
    names = list(blocks)
    for key, other, _ in RATIOS:
        if other in impls:
            ours, theirs = blocks[names[0]], blocks[names[impls.index(other)]]
            result[key] = round(statistics.median(a['wall'] / b['wall']
                                                  for a, b in zip(ours, theirs)), 3)
    for r in result['results']:
        print(f"{r['implementation']:<30s} {r['sec_per_iter']:.3f} s/iter  "
              f"{r['sec_per_kimg']:.1f} s/kimg  CPU {r['cpu_sec_per_iter']:.3f} s/iter  "
              f"blocks {r['blocks_sec_per_iter']}")
    for key, _, _ in RATIOS:
        if key in result:
            print(f"{key.replace('_', ' ')}: {result[key]:.3f} (median ratio of adjacent blocks)")
    print(f"other processes kept {result['other_busy_cores']:.2f} cores busy")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    write_markdown(out.with_suffix('.md'), result)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == '__main__':
    main()
