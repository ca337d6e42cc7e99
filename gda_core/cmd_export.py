"""`gda export`: write a trained network's G_ema as a plain NVIDIA-layout generator."""

import click

from . import export as exporting
from .generate import open_model
from .plugins import default_manager


@click.command()
# Input and output.
@click.option('--network', help='Trained network: gda snapshot, NVIDIA pickle, path or URL', metavar='PATH', required=True)
@click.option('--out',     help='Output file (state_dict with kwargs; read by stylegan2_ada.load)', metavar='FILE', required=True)
# Execution.
@click.option('--device',  help='Torch device', metavar='DEV', default='cpu', show_default=True)
def export(network, out, device):
    """Fold the plugins' inference behaviour into plain weights and write G_ema.

    \b
    Example:
      gda export --network runs/00000-target-fewshot-batch4/network-snapshot-000020.pkl --out G.pt
    """
    manager = default_manager()
    model = open_model(network, device=device, manager=manager)
    side_files = []
    G, folded = exporting.export(model, manager, out, side_files)
    others = [record['name'] for record in model.plugins if record['name'] not in folded]
    notes = ([f'folded in: {", ".join(folded)}'] if folded else []) + \
        ([f'nothing to fold: {", ".join(others)}'] if others else []) + \
        ([f'with {", ".join(side_files)}'] if side_files else [])
    click.echo(f'Wrote {out}: {G.img_resolution}px generator' +
               (f' ({"; ".join(notes)})' if notes else ''))
