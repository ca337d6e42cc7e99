"""`gda train`: adapt a pre-trained StyleGAN2 to a few images, or train one from scratch.

Plugin options appear as `--<plugin>-<name>` under a heading per plugin in `gda train --help`; they
are built from the installed plugins when the command is used, and only the active plugins' (those
given with --plugin) may be set.
"""

import copy
import json

import click
from click.core import ParameterSource

from stylegan2_ada.augment_specs import AUGPIPE_NAMES
from stylegan2_ada.training_config import CFG_NAMES, SOURCE_G
from stylegan2_ada.training_options import FIELDS, RENAMES

from . import demo_defaults
from .composition import option_flag, option_key
from .plugins import default_manager

PLUGIN_PARAM = 'plugin__{plugin}__{option}'   # click parameter name of a plugin option


class TrainCommand(click.Command):
    """`gda train` with the installed plugins' options added and listed per plugin in --help."""

    manager = None   # None: the process's default plugin manager

    def plugin_manager(self):
        return self.manager if self.manager is not None else default_manager()

    def make_context(self, info_name, args, parent=None, **extra):
        self.retire_clashing_plugins()   # before click reads the parameters (and --help)
        return super().make_context(info_name, args, parent=parent, **extra)

    def retire_clashing_plugins(self):
        """Take out of service each plugin whose option flags clash with core flags or with an
        earlier plugin's (--plugin then names the clash); once per manager."""
        manager = self.plugin_manager()
        if getattr(self, '_retired_for', None) is manager:
            return
        taken = {decl for param in self.params for decl in getattr(param, 'opts', [])
                 + getattr(param, 'secondary_opts', [])}
        for name in sorted(manager.plugins):
            flags = {decl for param in self._options_of(name)
                     for decl in param.opts + param.secondary_opts}
            clash = sorted(flags & taken)
            if clash:
                manager.mark_broken(name, f'its option flag(s) {", ".join(clash)} clash with '
                                          f'other gda train options')
            taken |= flags if not clash else set()
        self._retired_for = manager

    def _options_of(self, name):
        return [click_option(name, option)
                for option in self.plugin_manager().plugins[name].options]

    def plugin_params(self):
        """{plugin name: [click.Option]} for every usable plugin (a getter: the clashes were
        taken out by retire_clashing_plugins)."""
        manager = self.plugin_manager()
        cache = getattr(self, '_plugin_params', None)
        if cache is not None and cache[0] is manager and cache[1] == sorted(manager.plugins):
            return cache[2]
        result = {name: self._options_of(name) for name in sorted(manager.plugins)}
        self._plugin_params = (manager, sorted(manager.plugins), result)
        return result

    def get_params(self, ctx):
        params = super().get_params(ctx)
        extra = [param for params_ in self.plugin_params().values() for param in params_]
        return params[:-1] + extra + params[-1:]   # keep --help last

    def format_options(self, ctx, formatter):
        plugin_params = self.plugin_params()
        plugin_names = {param.name for params in plugin_params.values() for param in params}
        core = [param.get_help_record(ctx) for param in self.get_params(ctx)
                if param.name not in plugin_names]
        with formatter.section('Options'):
            formatter.write_dl([record for record in core if record])
        manager = self.plugin_manager()
        for name, params in plugin_params.items():
            if params:
                with formatter.section(f'Options of plugin {name} '
                                       f'({manager.plugins[name].origin}, needs --plugin {name})'):
                    formatter.write_dl([param.get_help_record(ctx) for param in params])


def click_option(plugin_name, option):
    """The click.Option of a plugin Option: default None, so that 'not given' is visible."""
    flag = option_flag(plugin_name, option.name)
    name = PLUGIN_PARAM.format(plugin=plugin_name, option=option_key(option.name))
    help_text = option.help + (f'  [default: {option.default}]' if option.default is not None
                               else '')
    if option.type is bool:
        no_flag = f'--no-{flag[2:]}'
        param = click.Option([f'{flag}/{no_flag}', name], default=None, help=help_text)
    else:
        kind = {int: click.INT, float: click.FLOAT, str: click.STRING}[option.type]
        if option.choices is not None:
            kind = click.Choice(list(option.choices))
        param = click.Option([flag, name], type=kind, default=None, help=help_text,
                             metavar=None if option.choices else option.type.__name__.upper())
    param.gda_plugin_option = (plugin_name, option_key(option.name))
    return param


def plugin_values(ctx, kw):
    """Split the plugin options out of the command's keyword arguments: {plugin: {option: value}}
    holding only what was given on the command line (defaults are the host's business)."""
    given = {}
    for param in ctx.command.get_params(ctx):
        owner = getattr(param, 'gda_plugin_option', None)
        if owner is None:
            continue
        value = kw.pop(param.name)
        if ctx.get_parameter_source(param.name) in (ParameterSource.COMMANDLINE,
                                                    ParameterSource.ENVIRONMENT):
            given.setdefault(owner[0], {})[owner[1]] = value
    return given


@click.command(cls=TrainCommand)
# Required data and source.
@click.option('--outdir',     help='Where to make the run directory', metavar='DIR', default='runs', show_default=True)
@click.option('--data',       help='Training images (zip or folder)', metavar='PATH')
@click.option('--source',     help='Network to adapt: path, URL, preset, or none (from scratch)', metavar='SRC')
@click.option('--source-g',   help="The source's generator to start from: G_ema, or G (CDC's choice) [default: G_ema]", type=click.Choice(SOURCE_G))
@click.option('--cfg',        help='Preset [default: fewshot with a source, auto without]', type=click.Choice(CFG_NAMES))
@click.option('--desc',       help='Run directory name suffix', metavar='STR')
# Method plugins, composed in command-line order.
@click.option('--plugin',     help='Method plugin to use (repeatable; order matters; see gda plugins)', metavar='NAME', multiple=True)
# Duration.
@click.option('--kimg',       help='Stop after this many thousand images (fractions allowed)', type=click.FloatRange(min=0, min_open=True))
@click.option('--iters',      help='Stop after this many iterations', type=click.IntRange(min=1))
@click.option('--tick',       help='Log a tick every this many kimg', type=click.FloatRange(min=0, min_open=True))
@click.option('--snap',       help='Snapshot and sample grid every this many ticks (0: only at the end)', type=click.IntRange(min=0))
@click.option('--metrics',    help='Metrics evaluated at each snapshot, e.g. kid,intra_lpips (see gda metrics) [default: none]', metavar='LIST')
# Hyperparameters (override the preset).
@click.option('--batch',      help='Total batch size', type=click.IntRange(min=1))
@click.option('--batch-gpu',  help='Batch per process per step (gradient accumulation)', type=click.IntRange(min=1))
@click.option('--lr',         help='Learning rate of G and D', type=click.FloatRange(min=0, min_open=True))
@click.option('--gamma',      help='R1 regularisation weight', type=click.FloatRange(min=0))
@click.option('--ema',        help='EMA half-life in kimg', type=click.FloatRange(min=0))
@click.option('--mirror/--no-mirror', help='Add x-flipped copies of the data [default: on with --cfg fewshot, as CDC]', default=None)
@click.option('--cond',       help='Train on the dataset labels (conditional)', is_flag=True)
@click.option('--seed',       help='Random seed', type=int, default=0, show_default=True)
# Augmentation.
@click.option('--aug',        help='Augmentation mode [default: ada]', type=click.Choice(['ada', 'noaug', 'fixed']))
@click.option('--p',          help='Augmentation probability (initial for ada, constant for fixed)', type=click.FloatRange(0, 1))
@click.option('--target',     help='ADA target for E[sign(D(real))]', type=click.FloatRange(0, 1))
@click.option('--ada-kimg',   help='ADA speed: kimg for p to move from 0 to 1 [default: 500 from scratch, 833.3 with --cfg fewshot (CDC), 100 fine-tuning with other presets]', type=click.FloatRange(min=0, min_open=True))
@click.option('--augpipe',    help='Augmentations used [default: bgc]', type=click.Choice(AUGPIPE_NAMES))
# Architecture when training from scratch.
@click.option('--cbase',      help='Channel base (--source none)', type=click.IntRange(min=1))
@click.option('--cmax',       help='Maximum channels (--source none)', type=click.IntRange(min=1))
@click.option('--map',        help='Mapping layers (--source none)', type=click.IntRange(min=1))
@click.option('--zdim',       help='z and w dimensions (--source none)', type=click.IntRange(min=1))
# Execution.
@click.option('--device',     help='Torch device [default: cuda if available]', metavar='DEV')
@click.option('--cpu-bf16/--no-cpu-bf16', help='On the CPU, run the blocks NVIDIA runs in fp16 (num_fp16_res) in bfloat16: about 1.5x faster where the CPU has AVX512-BF16 or AMX, slower where it has not [default: off, float32 as NVIDIA on the CPU]', default=None)
@click.option('--gpus',       help='Processes on this machine, one per GPU (gloo on CPU) [default: 1; under torchrun: its count]', type=click.IntRange(min=1))
@click.option('--resume',     help='Continue this run directory from its newest valid snapshot, with its own options', metavar='RUN_DIR')
@click.option('--dry-run',    help='Print the resolved configuration and exit', is_flag=True)
@click.pass_context
def train(ctx, **kw):
    """Fine-tune a network on new images (or train from scratch with --source none).

    \b
    Examples:
      gda train --data target.zip --source ffhq256
      gda train --data target.zip --source ffhq256 --plugin freezed --freezed-layers 4
      gda train --data faces.zip --source none --cfg auto --kimg 1000
      gda train --resume runs/00000-target-fewshot-batch4 --kimg 40
      torchrun --nproc_per_node 4 -m gda_core train --data target.zip --source ffhq256
    """
    from . import resume, training   # torch: only once a run is really wanted (fast --help)
    plugin_options = plugin_values(ctx, kw)
    manager = ctx.command.plugin_manager()
    run_manager = ctx.command.manager   # None: the installed plugins, loadable in new processes
    if kw['resume'] is not None:
        given = {name: value for name, value in kw.items()
                 if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                       ParameterSource.ENVIRONMENT)}
        given = {name: (list(value) if name == 'plugin' else value)
                 for name, value in given.items()}
        config = resume.resume_config(dict(resume=kw['resume']), given, plugin_options)
        if kw['dry_run']:
            click.echo(json.dumps(training.describe(training.prepare(config, manager)), indent=2))
            return
        training.run(config, log=click.echo, manager=run_manager)
        return
    demo = kw['data'] is None and kw['source'] is None
    given_origin = {}
    if demo:
        filled = demo_defaults.settings(kw)
        kw.update(filled)
        given_origin = {key: 'demo' for key in filled}
    if kw['data'] is None:
        raise click.UsageError('--data is required: a zip or folder of training images (omit '
                               'both --data and --source to run the bundled demo)')
    if kw['source'] is None:
        raise click.UsageError(f'--source is required: a network file, URL, one of the presets '
                               f'({training.preset_names()}), or none to train from scratch '
                               f'(omit both --data and --source to run the bundled demo)')
    config = dict(outdir=kw['outdir'], data=kw['data'], source=kw['source'],
                  desc=kw['desc'], options=core_options(kw), metrics=kw['metrics'],
                  mirror=kw['mirror'], source_g=kw['source_g'], cond=kw['cond'],
                  device=kw['device'], gpus=kw['gpus'],
                  plugins=list(kw['plugin']), plugin_options=plugin_options,
                  first_log_line=demo_defaults.FIRST_LOG_LINE if demo else None,
                  given_origin=given_origin)
    if kw['dry_run']:
        click.echo(json.dumps(training.describe(training.prepare(config, manager)), indent=2))
        return
    training.run(config, log=click.echo, manager=run_manager)


def core_options(kw):
    """{TrainingOptions field: value} of every core option flag (None: not given)."""
    return {RENAMES.get(name, name): value for name, value in kw.items()
            if RENAMES.get(name, name) in FIELDS}


def make_train_command(manager):
    """A `gda train` bound to `manager` (tests, embedding applications)."""
    command = copy.copy(train)
    command.manager = manager
    command._plugin_params = None
    command._retired_for = None
    return command
