"""`gda train`: adapt a pre-trained StyleGAN2 to a few images, or train one from scratch."""

import json

import click

from . import training


@click.command()
# Required data and source.
@click.option('--outdir',     help='Where to make the run directory', metavar='DIR', default='runs', show_default=True)
@click.option('--data',       help='Training images (zip or folder)', metavar='PATH')
@click.option('--source',     help='Network to adapt: path, URL, preset, or none (from scratch)', metavar='SRC')
@click.option('--cfg',        help='Preset [default: fewshot with a source, auto without]', type=click.Choice(training.CFG_NAMES))
@click.option('--desc',       help='Run directory name suffix', metavar='STR')
# Duration.
@click.option('--kimg',       help='Stop after this many thousand images (fractions allowed)', type=click.FloatRange(min=0, min_open=True))
@click.option('--iters',      help='Stop after this many iterations', type=click.IntRange(min=1))
@click.option('--tick',       help='Log a tick every this many kimg', type=click.FloatRange(min=0, min_open=True))
@click.option('--snap',       help='Snapshot and sample grid every this many ticks (0: only at the end)', type=click.IntRange(min=0))
# Hyperparameters (override the preset).
@click.option('--batch',      help='Total batch size', type=click.IntRange(min=1))
@click.option('--batch-gpu',  help='Batch per process per step (gradient accumulation)', type=click.IntRange(min=1))
@click.option('--lr',         help='Learning rate of G and D', type=click.FloatRange(min=0, min_open=True))
@click.option('--gamma',      help='R1 regularisation weight', type=click.FloatRange(min=0))
@click.option('--ema',        help='EMA half-life in kimg', type=click.FloatRange(min=0))
@click.option('--mirror',     help='Add x-flipped copies of the data', is_flag=True)
@click.option('--cond',       help='Train on the dataset labels (conditional)', is_flag=True)
@click.option('--seed',       help='Random seed', type=int, default=0, show_default=True)
# Augmentation.
@click.option('--aug',        help='Augmentation mode', type=click.Choice(['ada', 'noaug', 'fixed']), default='ada', show_default=True)
@click.option('--p',          help='Augmentation probability (initial for ada, constant for fixed)', type=click.FloatRange(0, 1))
@click.option('--target',     help='ADA target for E[sign(D(real))]', type=click.FloatRange(0, 1))
@click.option('--augpipe',    help='Augmentations used', type=click.Choice(training.AUGPIPES), default='bgc', show_default=True)
# Architecture when training from scratch.
@click.option('--cbase',      help='Channel base (--source none)', type=click.IntRange(min=1))
@click.option('--cmax',       help='Maximum channels (--source none)', type=click.IntRange(min=1))
@click.option('--map',        help='Mapping layers (--source none)', type=click.IntRange(min=1))
@click.option('--zdim',       help='z and w dimensions (--source none)', type=click.IntRange(min=1))
# Execution.
@click.option('--device',     help='Torch device [default: cuda if available]', metavar='DEV')
@click.option('--dry-run',    help='Print the resolved configuration and exit', is_flag=True)
def train(**kw):
    """Fine-tune a network on new images (or train from scratch with --source none).

    \b
    Examples:
      gda train --data target.zip --source ffhq256
      gda train --data faces.zip --source none --cfg auto --kimg 1000
    """
    if kw['data'] is None:
        raise click.UsageError('--data is required: a zip or folder of training images')
    if kw['source'] is None:
        raise click.UsageError(f'--source is required: a network file, URL, one of the presets '
                               f'({training.preset_names()}), or none to train from scratch')
    options = dict(kimg=kw['kimg'], iters=kw['iters'], batch=kw['batch'],
                   batch_gpu=kw['batch_gpu'], lr=kw['lr'], gamma=kw['gamma'],
                   ema_kimg=kw['ema'], ada_target=kw['target'], cbase=kw['cbase'],
                   cmax=kw['cmax'], map=kw['map'], zdim=kw['zdim'])
    config = dict(outdir=kw['outdir'], data=kw['data'], source=kw['source'], cfg=kw['cfg'],
                  desc=kw['desc'], options=options, tick=kw['tick'], snap=kw['snap'],
                  mirror=kw['mirror'], cond=kw['cond'], seed=kw['seed'], aug=kw['aug'],
                  p=kw['p'], augpipe=kw['augpipe'], device=kw['device'])
    if kw['dry_run']:
        click.echo(json.dumps(training.describe(training.prepare(config)), indent=2))
        return
    training.run(config, log=click.echo)
