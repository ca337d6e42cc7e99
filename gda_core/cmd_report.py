"""`gda report RUN_DIR`: a self-contained HTML page of a run's losses, metrics and images."""

import click

from .run_dir import require_run_dir


@click.command()
@click.argument('run_dir', metavar='RUN_DIR')
@click.option('--out',     help='HTML file to write [default: RUN_DIR/report.html]', metavar='FILE')
@click.option('--pairs',   help='Source/adapted pairs rendered from the newest snapshot (0: none)', type=click.IntRange(min=0), default=8, show_default=True)
@click.option('--seed',    help='Seed of the pairs\' latents', type=int, default=0, show_default=True)
@click.option('--device',  help='Torch device for the pairs [default: cuda if available]', metavar='DEV')
def report(run_dir, out, pairs, seed, device):
    """Write an HTML report: loss curves, metrics over kimg, sample grids, source/adapted pairs.

    \b
    Example:
      gda report runs/00001-babies-fewshot-batch4 && xdg-open runs/00001-babies-fewshot-batch4/report.html
    """
    import torch   # with the report module, only once a report is really wanted (fast --help)

    from .report import write_report
    require_run_dir(run_dir, 'report')
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    path = write_report(run_dir, out, pairs_count=pairs, seed=seed, device=device)
    click.echo(f'Report written to {path}')
