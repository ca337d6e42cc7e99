"""Where one training iteration's memory goes, phase by phase, measured on the CPU (issue 23).

Runs `gda train` in this process on the paper256-shaped random network of gpu_paper256.py
(--random-init: 256 px, 512-d z and w, channel base 16384, max 512) with batch 4 and the chosen
plugins (default idc+patchd, the headline), and wraps the training loop's phases (Gmain, Greg,
Dmain, Dreg, the plugins' G terms, each optimiser step) to record, per phase and iteration:
RSS before, the phase's own peak RSS (Linux VmHWM, reset before the phase through
/proc/self/clear_refs) and RSS after. With --profile the first --profile-iters iterations also run
under torch.profiler(profile_memory=True), and the ops that allocate the most are listed with each phase's net total. (torch's categorised memory
timeline needs with_stack=True, whose events torch 2.13's CPU build fails to decode, so the
categories are read from the phases instead.)

No GPU is needed; with --device cuda each phase also records torch's GPU peak (allocated and
reserved), which is what benchmarks/gpu_issue23.sh runs on a device. The first iteration (index 0) runs every phase
(the lazy regularisation intervals divide 0) and, with patchd, the image-level branch; the second
runs the patch branch without regularisation.

    python benchmarks/memory_phases.py [--plugins idc,patchd] [--iters 2] [--profile]
        [--out benchmarks/results/memory_phases]
    python benchmarks/memory_phases.py --tiny --iters 1          # a 32 px dry run (tests)
"""

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import sys
import tempfile

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gpu_paper256  # noqa: E402  (the paper256 and tiny shapes, random source and target)
from machine_info import cpu_model  # noqa: E402

from gda_core.cli import main as gda_main  # noqa: E402
from stylegan2_ada.loss import StyleGAN2Loss  # noqa: E402
from stylegan2_ada.training_step import TrainingStep  # noqa: E402

MB = 2 ** 20


def _status_kb(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in pathlib.Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f'/proc/self/status has no {field}')


def reset_peak():
    """Make VmHWM start again from the current RSS (Linux >= 4.0: clear_refs value 5)."""
    pathlib.Path('/proc/self/clear_refs').write_text('5')


class PhaseMeter:
    """Records RSS before, peak during and RSS after every wrapped call; labels the profiler."""

    def __init__(self, cuda=False):
        self.records = []
        self.iteration = 0
        self.cuda = cuda

    def _gpu_before(self):
        if not self.cuda:
            return {}
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return dict(gpu_before_mb=torch.cuda.memory_allocated() / MB)

    def _gpu_after(self):
        if not self.cuda:
            return {}
        torch.cuda.synchronize()
        return dict(gpu_peak_mb=torch.cuda.max_memory_allocated() / MB,
                    gpu_reserved_mb=torch.cuda.max_memory_reserved() / MB)

    @contextlib.contextmanager
    def phase(self, name):
        before = _status_kb('VmRSS')
        gpu = self._gpu_before()
        reset_peak()
        with torch.profiler.record_function(f'phase:{name}'):
            yield
        self.records.append(dict(iteration=self.iteration, phase=name, rss_before_mb=before / MB,
                                 peak_mb=_status_kb('VmHWM') / MB,
                                 rss_after_mb=_status_kb('VmRSS') / MB, **gpu, **self._gpu_after()))

    def wrap(self, owner, attribute, label):
        """Replace owner.attribute by a version measured as phase label(args)."""
        original = getattr(owner, attribute)

        def measured(this, *args, **kwargs):
            with self.phase(label(this, args, kwargs)):
                return original(this, *args, **kwargs)
        setattr(owner, attribute, measured)
        return original


def instrument(meter, profiler_state):
    """Wrap the loop's phases; returns a function that restores the originals."""
    originals = [
        (StyleGAN2Loss, 'accumulate_gradients',
         meter.wrap(StyleGAN2Loss, 'accumulate_gradients', lambda this, a, k: a[0])),
        (StyleGAN2Loss, 'accumulate_g_loss_terms',
         meter.wrap(StyleGAN2Loss, 'accumulate_g_loss_terms', lambda this, a, k: 'G_terms')),
        (TrainingStep, '_optimizer_step',
         meter.wrap(TrainingStep, '_optimizer_step', lambda this, a, k: 'optimizer_step')),
    ]
    step = TrainingStep.step

    def counted_step(this):
        meter.iteration = this.iteration
        step(this)
        if profiler_state['profiler'] is not None:
            profiler_state['profiler'].step()
    TrainingStep.step = counted_step
    originals.append((TrainingStep, 'step', step))

    def restore():
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)
    return restore


def train_args(workdir, source, target, plugins, iters, device):
    args = ['train', '--data', target, '--source', source, '--outdir', os.path.join(workdir, 'runs'),
            '--iters', str(iters), '--batch', '4', '--device', device, '--snap', '0', '--seed', '0']
    for plugin in plugins:
        args += ['--plugin', plugin]
    return args


def run_training(args):
    try:
        gda_main.main(args, standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise


def phase_table(records):
    """Per phase: the largest peak over the iterations and what it added to the RSS before."""
    table = {}
    for record in records:
        key = (record['iteration'], record['phase'])
        row = table.setdefault(key, dict(iteration=record['iteration'], phase=record['phase'],
                                         calls=0, peak_mb=0.0, added_mb=0.0, rss_before_mb=None))
        row['calls'] += 1
        if 'gpu_peak_mb' in record:
            row['gpu_peak_mb'] = max(row.get('gpu_peak_mb', 0.0), record['gpu_peak_mb'])
            row['gpu_reserved_mb'] = max(row.get('gpu_reserved_mb', 0.0), record['gpu_reserved_mb'])
        row['peak_mb'] = max(row['peak_mb'], record['peak_mb'])
        row['added_mb'] = max(row['added_mb'], record['peak_mb'] - record['rss_before_mb'])
        if row['rss_before_mb'] is None:
            row['rss_before_mb'] = record['rss_before_mb']
    return list(table.values())


def top_allocations(profiler, count=25):
    """Each phase label's net allocation, then the ops that allocated the most CPU memory
    themselves (freed memory counts negative, so an op's self figure is what it left behind)."""
    phases, ops = [], []
    for event in profiler.key_averages():
        row = dict(op=event.key, self_mb=event.self_cpu_memory_usage / MB,
                   total_mb=event.cpu_memory_usage / MB, calls=event.count)
        (phases if event.key.startswith('phase:') else ops).append(row)
    ops.sort(key=lambda row: -row['self_mb'])
    return sorted(phases, key=lambda row: row['op']) + [row for row in ops[:count] if row['self_mb'] > 0]


def markdown(result):
    lines = [f'# Memory per phase of one training iteration (CPU, {result["protocol"]["network"]})', '',
             f'Command: `{result["command"]}`  ',
             f'Date: {result["date"]}  ', f'Machine: {result["machine"]}  ',
             f'Plugins: {", ".join(result["protocol"]["plugins"])}; batch 4; '
             f'{result["protocol"]["iters"]} iterations; torch {result["torch"]}', '',
             '| iteration | phase | calls | RSS before (MB) | peak RSS (MB) | added by the phase (MB) |',
             '| --- | --- | --- | --- | --- | --- |']
    for row in result['phases']:
        gpu = (f' GPU peak {row["gpu_peak_mb"]:.0f} MB allocated, {row["gpu_reserved_mb"]:.0f} MB '
               f'reserved' if 'gpu_peak_mb' in row else '')
        lines.append(f'| {row["iteration"]} | {row["phase"]} | {row["calls"]} | '
                     f'{row["rss_before_mb"]:.0f} | {row["peak_mb"]:.0f} | {row["added_mb"]:.0f}{gpu} |')
    if result.get('allocations'):
        lines += ['', 'torch.profiler (profile_memory=True) over the profiled iterations: the ops '
                  'that allocated the most themselves (self, summed over calls; memory freed '
                  'inside the op counts negative), and each phase label\'s net total.', '',
                  '| op | calls | self alloc (MB) | total (MB) |', '| --- | --- | --- | --- |']
        for row in result['allocations']:
            lines.append(f'| `{row["op"]}` | {row["calls"]} | {row["self_mb"]:.0f} | '
                         f'{row["total_mb"]:.0f} |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--plugins', default='idc,patchd', help='comma list, in --plugin order')
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--profile', action='store_true', help='also run torch.profiler')
    parser.add_argument('--profile-iters', type=int, default=1)
    parser.add_argument('--device', default='cpu', help='cuda: also each phase\'s GPU peak')
    parser.add_argument('--tiny', action='store_true', help='32 px network: a quick dry run')
    parser.add_argument('--workdir', default=None)
    parser.add_argument('--out', default='benchmarks/results/memory_phases')
    args = parser.parse_args()
    shape = gpu_paper256.TINY if args.tiny else gpu_paper256.PAPER256
    plugins = [name for name in args.plugins.split(',') if name]
    workdir = args.workdir or tempfile.mkdtemp(prefix='gda-memory-')
    source = os.path.join(workdir, 'random-source.pkl')
    network = gpu_paper256.random_source(source, shape)
    target = gpu_paper256.random_target(os.path.join(workdir, 'random-target'), shape['resolution'])
    meter, state = PhaseMeter(cuda=args.device.startswith('cuda')), dict(profiler=None)
    restore = instrument(meter, state)
    allocations = None
    try:
        if args.profile:
            schedule = torch.profiler.schedule(wait=0, warmup=0, active=args.profile_iters, repeat=1)
            activities = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if meter.cuda else [])
            with torch.profiler.profile(activities=activities,
                                        profile_memory=True, schedule=schedule) as profiler:
                state['profiler'] = profiler
                run_training(train_args(workdir, source, target, plugins, args.iters, args.device))
            allocations = top_allocations(profiler)
        else:
            run_training(train_args(workdir, source, target, plugins, args.iters, args.device))
    finally:
        restore()
    result = dict(command='python benchmarks/memory_phases.py ' + ' '.join(sys.argv[1:]),
                  date=datetime.datetime.now().isoformat(timespec='seconds'),
                  machine=f'{cpu_model()}, {os.cpu_count()} cores, load average '
                          f'{[round(v, 2) for v in os.getloadavg()]}',
                  torch=torch.__version__,
                  protocol=dict(network=('tiny 32 px' if args.tiny else 'paper256 random init'),
                                plugins=plugins, iters=args.iters, **network),
                  phases=phase_table(meter.records), allocations=allocations)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(result, indent=2) + '\n')
    out.with_suffix('.md').write_text(markdown(result))
    print(markdown(result))


if __name__ == '__main__':
    main()
