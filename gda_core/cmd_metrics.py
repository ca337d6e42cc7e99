"""`gda metrics`: FID, KID, precision/recall, IS, intra-cluster LPIPS and SCS of a network or a run.

A run directory evaluates its snapshots and appends to its metric-<name>.jsonl files (what
`gda report` plots); so does a snapshot file inside a run directory. Any other network file (or
URL, or preset) only prints its results.
"""

import json
import os

import click

from stylegan2_ada.errors import UserError

from .metric_names import EDGE_DETECTORS
from .run_dir import is_run_dir, require_run_dir

# The metrics package loads torch: it is imported where metrics are computed, so that --help is fast.


def _recorded(run_dir, name):
    from .metrics.records import read_records, record_path
    path = record_path(run_dir, name)
    return {record.get('snapshot') for record in read_records(path)} if os.path.exists(path) else set()


def plan_run(run_dir, names, which):
    """[(snapshot path, metrics to compute)] for a run directory and --snapshots `which`."""
    from .metrics.records import snapshots
    files = snapshots(run_dir)
    if not files:
        raise UserError(f'run directory {run_dir} holds no network-snapshot-*.pkl yet')
    if which == 'latest':
        return [(files[-1], names)]
    if which == 'all':
        return [(path, names) for path in files]
    done = {name: _recorded(run_dir, name) for name in names}
    plan = [(path, [name for name in names if os.path.basename(path) not in done[name]]) for path in files]
    return [(path, todo) for path, todo in plan if todo]


@click.command()
@click.argument('network', metavar='NETWORK_OR_RUN_DIR')
@click.option('--metrics',     help='Comma-separated: fid, kid, pr, is, intra_lpips, scs', metavar='LIST', default='fid', show_default=True)
@click.option('--data',        help='Reference images, zip or folder [default: the training set]', metavar='PATH')
@click.option('--train-data',  help='Training images: the clusters of intra_lpips [default: --data]', metavar='PATH')
@click.option('--source',      help='Source network of scs [default: the one stored in the snapshot]', metavar='SRC')
@click.option('--num-gen',     help='Generated images (scs: pairs) per metric [default: per metric]', type=click.IntRange(min=2))
@click.option('--num-real',    help='Use at most this many reference images (seeded subset)', type=click.IntRange(min=2))
@click.option('--snapshots',   'which', help='Snapshots of a run directory: without a record, all, or the newest', type=click.Choice(['new', 'all', 'latest']), default='new', show_default=True)
@click.option('--seed',        help='Seed of the latents', type=int, default=0, show_default=True)
@click.option('--trunc',       help='Truncation psi', type=float, default=1.0, show_default=True)
@click.option('--noise-mode',  help='Noise of the generated images', type=click.Choice(['random', 'const', 'none']), default='random', show_default=True)
@click.option('--edges',       help='Edge detector of scs', type=click.Choice(EDGE_DETECTORS), default='sobel', show_default=True)
@click.option('--inception',   help='inception-2015-12-05.pt [default: $GDA_INCEPTION, the cache, a download]', metavar='PATH')
@click.option('--vgg16',       help='vgg16.pt [default: $GDA_VGG16, the cache, a download]', metavar='PATH')
@click.option('--hed',         help='HED weights for --edges hed [default: $GDA_HED]', metavar='PATH')
@click.option('--batch',       help='Images per detector batch', type=click.IntRange(min=1), default=32, show_default=True)
@click.option('--device',      help='Torch device [default: cuda if available]', metavar='DEV')
@click.option('--no-cache',    help='Recompute reference-set features instead of using the cache', is_flag=True)
@click.option('--json',        'as_json', help='Print the records as JSON lines', is_flag=True)
def metrics(network, which, as_json, **kw):
    """Compute metrics of a network (path, URL, preset) or of a run directory's snapshots.

    \b
    Examples:
      gda metrics runs/00001-babies-fewshot-batch4 --metrics fid,kid,intra_lpips
      gda metrics snapshot.pkl --metrics fid,pr --data babies-test.zip
      gda metrics snapshot.pkl --metrics scs --source ffhq256 --edges hed --hed hed.pytorch
    """
    from . import metrics as metrics_lib
    names = metrics_lib.parse_metrics(kw['metrics'])
    log = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    options = dict(data=kw['data'], train_data=kw['train_data'], num_gen=kw['num_gen'], num_real=kw['num_real'],
                   seed=kw['seed'], truncation_psi=kw['trunc'], noise_mode=kw['noise_mode'], edges=kw['edges'],
                   batch=kw['batch'], device=kw['device'], use_cache=not kw['no_cache'], log=log,
                   detector_paths=dict(inception=kw['inception'], vgg16=kw['vgg16'], hed=kw['hed']))
    source = kw['source']
    results = []
    if os.path.isdir(network):
        require_run_dir(network, 'metrics')
        plan = plan_run(network, names, which)
        if not plan:
            log(f'Every snapshot of {network} already has {", ".join(names)} (--snapshots all recomputes)')
        for path, todo in plan:
            log(f'{os.path.basename(path)}: {", ".join(todo)}')
            found = metrics_lib.evaluate_snapshot(network, path, todo, source_G=source, **options)
            results += found.values()
    else:
        run_dir = os.path.dirname(os.path.abspath(network))
        if os.path.isfile(network) and is_run_dir(run_dir):
            found = metrics_lib.evaluate_snapshot(run_dir, network, names, source_G=source, **options)
        else:
            found = metrics_lib.evaluate_network(network, names, source=source, **options)
        results += found.values()
    if as_json:
        for record in results:
            click.echo(json.dumps(record))
