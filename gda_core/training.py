"""The host's training run: source + dataset + options + plugins -> networks -> the engine's loop.

Fine-tuning (--source PATH|URL|PRESET) starts G, G_ema and the frozen source copy from the source's
G_ema (the papers' choice: the EMA generator is the good one; `--source-g G` takes the source's G,
as CDC's code does with rosinality's `g`) and D from its D; the source's own
network kwargs always win. --source none trains from scratch with NVIDIA's preset widths. The
active plugins (--plugin, in order) propose defaults, then fill the loop's injection points
(composition.py); every conflict is found before the run directory exists.

--resume RUN_DIR continues a run from its newest valid snapshot (resume.py). With several
processes (torchrun, or --gpus N which spawns them) every process runs `train_process`; rank 0
alone writes the run directory (stylegan2_ada/distributed.py). --gpus N prepares the run once, in
the parent, and hands the plan to the processes it spawns.
"""

import collections
import contextlib
import copy
import json
import os
import re

import torch

import stylegan2_ada
from stylegan2_ada.augment_specs import AUGPIPE_NAMES
from stylegan2_ada import distributed, precision
from stylegan2_ada.checkpoint import atomic_write, save_snapshot
from stylegan2_ada.checkpoint.presets import preset_names
from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.errors import TrainingDiverged, UserError
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_config import CFG_NAMES, preset_mirror, preset_sources
from stylegan2_ada.training_loop import TrainingLoop
from stylegan2_ada.training_options import PROPOSABLE, build as build_options, use_source_architecture

from . import comparison, composition, datasets, generate, metrics as run_metrics, resume
from .plugins import PluginError, default_manager
from .run_context import RunContext
from .run_log import RunLog, silent

__all__ = ['CFG_NAMES', 'AUGPIPES', 'preset_names', 'prepare', 'describe', 'run']
AUGPIPES = AUGPIPE_NAMES

# Core options a config may also give beside config['options'] (tests' configs do).
RUN_OPTIONS = ('aug', 'augpipe', 'p', 'tick', 'snap', 'seed', 'cfg')


def build_networks(opts, resolution, channels, c_dim):
    """Fresh G and D for training from scratch (NVIDIA's train.py kwargs)."""
    channel_base = opts.cbase or int(opts.fmaps * 32768)
    channel_max = opts.cmax or 512
    z_dim = opts.zdim or 512
    common = dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
                  conv_clamp=256)
    G = Generator(z_dim=z_dim, c_dim=c_dim, w_dim=z_dim, img_resolution=resolution,
                  img_channels=channels, mapping_kwargs=dict(num_layers=opts.map),
                  synthesis_kwargs=common)
    D = Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=channels,
                      architecture=opts.d_architecture, **common,
                      epilogue_kwargs=dict(mbstd_group_size=opts.mbstd))
    return G, D


def load_source(source, which=None):
    """The networks to fine-tune, with a clear error when the file lacks them. `which` picks the
    source's generator: 'G_ema' (default, falling back to G) or 'G' (CDC starts from `g`)."""
    data = stylegan2_ada.load(source, verbose=True)
    if which == 'G' and data.get('G') is None:
        raise UserError(f'--source-g G: {source} holds no training G '
                        f'(found: {", ".join(k for k in ("G", "D", "G_ema") if data.get(k))})')
    G = data.get('G') if which == 'G' else data.get('G_ema') or data.get('G')
    if G is None or data.get('D') is None:
        raise UserError(f'{source} holds no generator and discriminator pair to fine-tune '
                        f'(found: {", ".join(k for k in ("G", "D", "G_ema") if data.get(k))}); '
                        f'fine-tuning needs a training snapshot with both')
    return data, G, data['D']


def check_dataset_matches(dataset, G, data_path):
    if dataset.resolution != G.img_resolution or dataset.num_channels != G.img_channels:
        raise UserError(
            f'{data_path} holds {dataset.resolution}x{dataset.resolution} images with '
            f'{dataset.num_channels} channel(s) but the source generates {G.img_resolution}x'
            f'{G.img_resolution} with {G.img_channels}; convert it with `gda dataset {data_path} '
            f'OUT.zip --resolution {G.img_resolution} '
            f'--channels {"gray" if G.img_channels == 1 else "rgb"}`')


def set_mbstd_group(D, group):
    """Keep D's minibatch-std group within the per-process batch (the equivalence rule of
    docs/resume-and-processes.md)."""
    epilogue = D.b4
    if epilogue.mbstd is not None and epilogue.mbstd.group_size is not None:
        new = min(epilogue.mbstd.group_size, group)
        epilogue.mbstd.group_size = new
        D.init_kwargs.setdefault('epilogue_kwargs', {})['mbstd_group_size'] = new


def next_run_dir(outdir, desc):
    """The next free `<outdir>/<id>-<desc>`; created later, once nothing can fail any more."""
    ids = [int(m.group(1)) for name in (os.listdir(outdir) if os.path.isdir(outdir) else [])
           if (m := re.match(r'^(\d+)-', name)) and os.path.isdir(os.path.join(outdir, name))]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


def source_architecture(G, D):
    """The architecture values a fine-tuning run really uses: its source's."""
    synthesis = G.init_kwargs.get('synthesis_kwargs', {})
    mbstd = D.b4.mbstd.group_size if D.b4.mbstd is not None else None
    return dict(map=G.init_kwargs.get('mapping_kwargs', {}).get('num_layers', 8), zdim=G.z_dim,
                cbase=synthesis.get('channel_base', 32768), cmax=synthesis.get('channel_max', 512),
                mbstd=mbstd, d_architecture=D.init_kwargs.get('architecture', 'resnet'))


def check_proposals(active):
    for entry in active:
        unknown = sorted(set(entry.proposals) - PROPOSABLE)
        if unknown:
            raise PluginError(f'plugin {entry.name!r} proposes defaults for {unknown}, which are '
                              f'not core options (proposable: {", ".join(sorted(PROPOSABLE))})')


def activate_plugins(config, manager=None):
    """(manager, the active plugins in --plugin order). config['plugins'] lists plugin names in
    order; config['plugin_options'] maps a plugin name to its explicitly set options."""
    manager = manager if manager is not None else default_manager()
    active = composition.activate(manager, list(config.get('plugins') or []),
                                  config.get('plugin_options'))
    check_proposals(active)
    return manager, active


def prepare(config, manager=None):
    """Resolve everything a run needs without writing anything (also serves --dry-run)."""
    manager, active = activate_plugins(config, manager)
    source = config['source']
    fine_tuning = source != 'none'
    explicit = dict(config['options'], **{key: config[key] for key in RUN_OPTIONS if key in config})
    cfg = explicit.get('cfg') or ('fewshot' if fine_tuning else 'auto')
    mirror_origin = 'command line'
    if config.get('mirror') is None:   # neither --mirror nor --no-mirror: the preset decides
        config = dict(config, mirror=preset_mirror(cfg))
        mirror_origin = f'--cfg {cfg}'
    dataset = ImageFolderDataset(config['data'], use_labels=config.get('cond', False),
                                 xflip=config['mirror'])
    gpus = config.get('gpus') or config.get('default_gpus') or 1
    proposals = [(entry.name, entry.proposals) for entry in active if entry.proposals]
    opts, origin = build_options(cfg, dataset.resolution, explicit, proposals, gpus=gpus,
                                 fine_tuning=fine_tuning)
    origin['mirror'] = mirror_origin
    loaded = None
    if fine_tuning:
        architecture = config.get('source_architecture')
        if architecture is None:   # a new run: read the source once (networks() reuses it)
            loaded = load_source(source, config.get('source_g'))
            architecture = source_architecture(loaded[1], loaded[2])
        opts = use_source_architecture(opts, origin, architecture)
    # Values set for the user rather than by them (the demo's, a resumed run's recorded origins).
    origin.update({key: how for key, how in (config.get('given_origin') or {}).items()
                   if key in origin})
    metrics = run_metrics.parse_metrics(config['metrics']) if config.get('metrics') else []
    return dict(config=config, dataset=dataset, opts=opts, origin=origin, cfg=cfg, metrics=metrics,
                fine_tuning=fine_tuning, active=active, manager=manager, loaded_source=loaded)


def describe(plan, run_ctx=None):
    """The resolved configuration as JSON-ready data (training_options.json and --dry-run); with
    the run context, each plugin's effective options (what options left at None became)."""
    config, opts = plan['config'], plan['opts']
    return dict(source=config['source'], data=config['data'], outdir=config['outdir'],
                device=config.get('device'),
                gpus=config.get('gpus') or config.get('default_gpus') or 1,
                mirror=bool(config.get('mirror', False)), cond=bool(config.get('cond', False)),
                source_g=config.get('source_g') or 'G_ema',
                metrics=plan['metrics'], options=opts.record(),
                option_origin=plan['origin'], preset_sources=preset_sources(plan['cfg']),
                dataset=dict(path=config['data'], images=len(plan['dataset']),
                             resolution=plan['dataset'].resolution,
                             channels=plan['dataset'].num_channels,
                             labels=plan['dataset'].label_dim),
                plugins=[dict(entry.record(), option_origin=entry.option_origin,
                              proposals=entry.proposals, hooks=entry.plugin.hooks,
                              **({} if run_ctx is None else dict(
                                  effective_options=run_ctx.effective_options(entry.name))))
                         for entry in plan['active']])


def networks(plan, device):
    """G, D, the frozen source G and the source reference, for fine-tuning or from scratch."""
    config, opts, dataset = plan['config'], plan['opts'], plan['dataset']
    if not plan['fine_tuning']:
        G, D = build_networks(opts, dataset.resolution, dataset.num_channels, dataset.label_dim)
        return G, D, None, None
    data, G_src, D = (plan.get('loaded_source')
                      or load_source(config['source'], config.get('source_g')))
    check_dataset_matches(dataset, G_src, config['data'])
    if dataset.label_dim != G_src.c_dim:
        raise UserError(f'the source is conditioned on {G_src.c_dim} labels but the dataset '
                        f'gives {dataset.label_dim}; use --cond to match')
    G = copy.deepcopy(G_src)
    source_G = copy.deepcopy(G_src).eval().requires_grad_(False).to(device)
    origin = data['origin']
    source_info = dict(reference=origin['reference'], url=origin['url'],
                       sha256=origin['sha256'], kwargs=G_src.init_kwargs)
    return G, D, source_G, source_info


def plugin_records(plan, run_ctx):
    """snapshot['gda']['plugins']: each active plugin with its options and state_dict()."""
    records = []
    for entry in plan['active']:
        state = plan['manager'].call(entry.name, 'state_dict', run=run_ctx.for_plugin(entry.name))
        records.append(dict(entry.record(), state=dict(state or {})))
    return records


def host_state(run_ctx, opts):
    """What the host itself must restore for generate and resume, kept in gda.loop."""
    return dict(anchors=run_ctx.anchor_state(), core_options=opts.record())


def run(config, log=print, manager=None):
    """Train (or resume, with config['resume']); returns the run directory. manager None: the
    installed plugins (entry points), which spawned processes can load too.

    Under a launcher (torchrun) this process is one rank. Otherwise `gpus` > 1 spawns that many
    local processes, after the user's mistakes have been caught here, in the parent, whose plan
    the processes then train with (see `sendable`).
    """
    world = distributed.launched_world_size()
    requested = config.get('gpus')
    if world is not None:
        if requested not in (None, world):
            raise UserError(f'--gpus {requested} under a launcher that started {world} '
                            f'process(es); drop --gpus (torchrun --nproc_per_node sets the count)')
        config = dict(config, gpus=world)
        # Several ranks: fail before the processes wait for each other, then train with the plan.
        return train_process(config, log, manager, prepare(config, manager) if world > 1 else None)
    gpus = requested or config.get('default_gpus') or 1
    config = dict(config, gpus=gpus)
    if gpus == 1:
        return train_process(config, log, manager)
    plan = prepare(config, manager)   # the user's mistakes, before any process starts
    cuda = torch.cuda.is_available() and (config.get('device') or 'cuda').startswith('cuda')
    if cuda and gpus > torch.cuda.device_count():
        raise UserError(f'--gpus {gpus}, but this machine has {torch.cuda.device_count()} CUDA '
                        f'device(s); use at most that many (or --device cpu for CPU processes)')
    if manager is not None:
        raise UserError(f'--gpus {gpus} starts new processes, which load plugins from their entry '
                        f'points; an in-process plugin manager cannot follow them (install the '
                        f'plugins, or start the processes yourself with torchrun)')
    return distributed.spawn(train_process, gpus, (config, log, None, sendable(plan)))


def sendable(plan):
    """The plan as spawned processes receive it (pickled): the dataset (its file list and labels;
    images are read on use), options and origins as they are, but not the plugin manager and the
    active plugins (plugin objects are modules, which do not pickle; `whole_plan` activates them
    again, which reads no file) nor the loaded source (tensors pickled to another process travel
    through shared memory, /dev/shm, which containers often keep small; each process reads the
    source file again, as NVIDIA's processes read their --resume pickle)."""
    return {key: value for key, value in plan.items()
            if key not in ('manager', 'active', 'loaded_source')}


def whole_plan(config, manager, plan=None):
    """The run's plan: prepared now, handed over whole (a launched rank prepared it to check the
    options), or sent by the parent process without its plugins (`sendable`)."""
    if plan is None:
        return prepare(config, manager)
    if 'active' in plan:
        return plan
    manager, active = activate_plugins(plan['config'], manager)
    return dict(plan, manager=manager, active=active)


def train_process(config, log=print, manager=None, plan=None):
    """One training process: joins the process group if launched as one of several."""
    dist, device = distributed.init_process(config.get('device'))
    finished = False
    try:
        result = _train(config, dist, device, log, manager, plan)
        finished = True
        return result
    finally:
        distributed.shutdown(dist, finished)


ResumePoint = collections.namedtuple('ResumePoint', 'run_dir path snapshot skipped')


def resume_point(run_dir, opts, dist, run_log):
    """The snapshot to resume from and the unreadable newer ones: rank 0 picks the newest valid
    snapshot (and warns about the others), every process reads that one."""
    saved = resume.read_run_options(run_dir)
    resume.check_resolved(run_dir, saved['options'], opts, fine_tuning=saved['source'] != 'none')
    path, snapshot, skipped = (resume.newest_valid_snapshot(run_dir, run_log)
                               if dist.rank == 0 else (None, None, []))
    path = dist.broadcast_object(path)
    if snapshot is None:
        snapshot = resume.read_resumable(path)
    return ResumePoint(run_dir, path, snapshot, skipped)


def _train(config, dist, device, log, manager, plan):
    """One process's run: plan, networks, plugins' extensions and the loop (every conflict found
    before anything is written), then the run directory restored or started, then training."""
    run_log = RunLog(log) if dist.rank == 0 else silent
    if config.get('first_log_line'):
        run_log(config['first_log_line'])
    plan = whole_plan(config, manager, plan)
    config, opts = plan['config'], plan['opts']   # config with the resolved --mirror
    point = resume_point(config['resume'], opts, dist, run_log) if config.get('resume') else None
    # Construction draws the same numbers on every process.
    distributed.seed_process(opts.seed, distributed.Distributed())
    G, D, G_ema, source_G, source_info = run_networks(plan, point, device)
    run_ctx, extensions, items = plugin_extensions(plan, G, D, source_G, device, dist)
    if dist.rank == 0:
        run_metrics.check_detectors(plan['metrics'])   # fail now, not at the first snapshot
    run_dir = point.run_dir if point else new_run_dir(plan, dist)
    writer = SnapshotWriter(plan, run_ctx, source_G, source_info, device, run_log)
    loop = TrainingLoop(run_dir, G, D, items, opts, G_ema=G_ema, extensions=extensions,
                        device=device, dist=dist, save_snapshot=writer, log=run_log)
    run_ctx.attach(loop.nets, loop.G_ema, report=loop.stats.report, gen_c=loop.gen_c)
    if point is None:
        start_run(plan, run_ctx, loop, run_log)
    elif not continue_run(point, plan, run_ctx, loop, run_log):
        return run_dir
    log_run(plan, run_ctx, loop, run_log)
    if point is None:
        setup_plugins(plan, run_ctx, loop)
    return train_and_finish(plan, loop, writer, source_G, run_log)


def run_networks(plan, point, device):
    """(G, D, G_ema, frozen source G, source reference): a resumed run's as its snapshot saved
    them, a new run's from the source or fresh (G_ema None: the loop copies G)."""
    config = plan['config']
    if point is None:
        G, D, source_G, source_info = networks(plan, device)
        G_ema = None
    else:
        G, D, G_ema, source_G, source_info = resume.restored_networks(point.snapshot, config,
                                                                      load_source)
        check_dataset_matches(plan['dataset'], G, config['data'])
        if source_G is not None:
            source_G = source_G.eval().requires_grad_(False).to(device)
    set_mbstd_group(D, plan['opts'].batch_gpu)
    return G, D, G_ema, source_G, source_info


def plugin_extensions(plan, G, D, source_G, device, dist):
    """(run context, Extensions, training items): every construction hook of the active plugins,
    in order, and the anchor requests checked (cheap: no data passes, nothing is written)."""
    config, opts = plan['config'], plan['opts']
    items, raw_images = datasets.views(plan['dataset'], config.get('mirror', False))
    run_ctx = RunContext('resume' if config.get('resume') else 'train', G=G, D=D, G_s=source_G,
                         dataset=raw_images, device=device, seed=opts.seed, core=opts.record(),
                         rank=dist.rank, world_size=dist.world_size)
    for entry in plan['active']:
        run_ctx.add_plugin(entry.name, entry.options)
    extensions = composition.build_extensions(plan['manager'], plan['active'], run_ctx)
    run_ctx.anchor_count()
    return run_ctx, extensions, items


def new_run_dir(plan, dist):
    """Rank 0's next free run directory, on every process (made once nothing can fail)."""
    config, opts = plan['config'], plan['opts']
    desc = config.get('desc') or f'{plan["dataset"].name}-{plan["cfg"]}-batch{opts.batch}'
    return dist.broadcast_object(next_run_dir(config['outdir'], desc) if dist.rank == 0 else None)


@contextlib.contextmanager
def eval_mode(modules):
    """The extension modules in eval mode (dropout off, batch-norm statistics fixed), as a
    snapshot opened by `gda metrics` renders them; each submodule's own mode comes back after."""
    saved = [(sub, sub.training) for module in modules for sub in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for sub, training in saved:
            sub.training = training


class SnapshotWriter:
    """The loop's save_snapshot(path, loop): a snapshot with everything `gda generate` and
    --resume need and, with --metrics, the metrics of that snapshot (rank 0)."""

    def __init__(self, plan, run_ctx, source_G, source_info, device, log):
        config = plan['config']
        self.plan, self.run_ctx, self.device, self.log = plan, run_ctx, device, log
        self.source_info = source_info
        self.kept_source = source_G if config.get('keep_source', True) else None
        self.training_set_kwargs = dict(path=config['data'], use_labels=config.get('cond', False),
                                        xflip=config.get('mirror', False),
                                        resolution=plan['dataset'].resolution)
        self.written = []

    def __call__(self, path, loop):
        self.written.append(path)
        save_snapshot(path, dict(
            G=loop.G, D=loop.D, G_ema=loop.G_ema, augment_pipe=loop.augment_pipe,
            training_set_kwargs=self.training_set_kwargs,
            gda=dict(source=self.source_info, source_G=self.kept_source,
                     plugins=plugin_records(self.plan, self.run_ctx),
                     loop=dict(loop.loop_state(), **host_state(self.run_ctx, loop.opts)))))
        if self.plan['metrics']:
            self.evaluate(path, loop)

    def evaluate(self, path, loop):
        """--metrics: the snapshot just written, evaluated from the live networks as `gda metrics
        RUN_DIR` evaluates the file (through the run's plugins, with the source G it keeps), with
        no reload; a record per metric appended to metric-<name>.jsonl, a log line each."""
        model = generate.Model(loop.nets, self.kept_source, self.run_ctx,
                               [entry.record() for entry in self.plan['active']], self.device)
        with eval_mode(list(loop.nets.modules.values())
                       + [twin for _, _, twin in loop.nets.ema_pairs]):
            records = run_metrics.evaluate_snapshot(
                loop.run_dir, path, self.plan['metrics'], model=model,
                data=self.plan['config']['data'], kimg=loop.cur_nimg / 1000,
                iteration=loop.iteration, device=self.device)
        for record in records.values():
            self.log(run_metrics.format_record(record))


def start_run(plan, run_ctx, loop, run_log):
    """A new run: the latent anchors, then (rank 0) the run directory and its
    training_options.json."""
    run_ctx.draw_anchors(loop.G.z_dim)
    if loop.dist.rank == 0:
        os.makedirs(loop.run_dir)
        with atomic_write(os.path.join(loop.run_dir, 'training_options.json'), 'w') as f:
            json.dump(dict(describe(plan, run_ctx), parameters=loop.parameter_counts()), f,
                      indent=2)
        run_log.attach(loop.run_dir)
        run_log(f'Run directory: {loop.run_dir}')


def continue_run(point, plan, run_ctx, loop, run_log):
    """A resumed run: every state restored, then (rank 0) its directory tidied and the resume
    recorded. False when the run already reached its stop condition: nothing then changes."""
    restore(plan, run_ctx, loop, point.snapshot)
    loop.last_snapshot, loop.snapshot_iteration = point.path, loop.iteration
    if loop.done():
        run_log(f'The run already reached its stop condition (iteration {loop.iteration}, '
                f'kimg {loop.cur_nimg / 1000:g}); nothing was changed; give a larger --kimg '
                f'or --iters to train on')
        return False
    if loop.dist.rank == 0:
        run_log.attach(point.run_dir)
        run_log(f'Resuming {point.run_dir} from {os.path.basename(point.path)}: iteration '
                f'{loop.iteration}, kimg {loop.cur_nimg / 1000:g}, tick {loop.tick}, '
                f'{loop.dist.world_size} process(es)')
        resume.tidy_run_dir(point.run_dir, loop.iteration, point.skipped, run_log)
        resume.record_resume(point.run_dir, plan['opts'], plan['config'].get('resume_changed', {}),
                             point.path, loop.iteration, loop.cur_nimg, loop.dist.world_size)
    return True


def restore(plan, run_ctx, loop, snapshot):
    """Resume: the host's state (anchors), the loop's, then each plugin's load_state_dict, in
    plugin order (setup is not called again: what it computed is in the plugin state)."""
    state = snapshot['gda']['loop']
    run_ctx.restore_anchors(state.get('anchors'))
    loop.load_loop_state(state)
    saved = {record['name']: record.get('state', {}) for record in snapshot['gda']['plugins']}
    for entry in plan['active']:
        if entry.name not in saved:
            raise UserError(f'the snapshot holds no state of plugin {entry.name!r}; resume with '
                            f'the plugins the run started with')
        plan['manager'].call(entry.name, 'load_state_dict', run=run_ctx.for_plugin(entry.name),
                             state=dict(saved[entry.name]))


def log_run(plan, run_ctx, loop, run_log):
    """Source, data, device and processes, then each plugin with the option values in effect."""
    config, dataset = plan['config'], plan['dataset']
    run_log(f'Source: {config["source"]}  data: {config["data"]} ({len(dataset)} images, '
            f'{dataset.resolution}px)  device: {loop.device}'
            f'{" (bfloat16 blocks)" if precision.cpu_bf16 else ""}  processes: {loop.dist.world_size}')
    for entry in plan['active']:   # the values in effect, not None for 'derived from the run'
        options = ' '.join(f'{composition.option_flag(entry.name, key)}={value}'
                           for key, value in run_ctx.effective_options(entry.name).items())
        run_log(f'Plugin {entry.name} ({entry.plugin.origin}) {options}'.rstrip())


def setup_plugins(plan, run_ctx, loop):
    """A new run: each plugin's setup, in order; then every process takes rank 0's weights and
    its own random streams."""
    for entry in plan['active']:
        plan['manager'].call(entry.name, 'setup', run=run_ctx.for_plugin(entry.name))
    loop.sync_from_rank0()
    distributed.seed_process(loop.opts.seed, loop.dist)


def train_and_finish(plan, loop, writer, source_G, run_log):
    """Train; then (rank 0, fine-tuning) comparison.png from the last snapshot."""
    try:
        loop.run()
    except TrainingDiverged as error:
        run_log.record(f'Error: {error}')   # the CLI prints it; log.txt keeps why the run stopped
        raise
    if loop.dist.rank == 0 and writer.written and source_G is not None:
        comparison.write(loop.run_dir, writer.written[-1], run_log, manager=plan['manager'],
                         device=loop.device, dataset=plan['dataset'])
    run_log(f'Done: {loop.iteration} iterations, {loop.cur_nimg / 1000:g} kimg. Results in '
            f'{loop.run_dir}')
    return loop.run_dir
