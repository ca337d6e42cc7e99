"""`gda export`: write a trained network's G_ema as a plain NVIDIA-layout generator, or as a
rosinality/stylegan2-pytorch checkpoint for the papers' own code."""

import click

from .plugins import default_manager

# torch and the engine are imported inside the functions, so that --help starts without torch.


def export_rosinality(model, manager, out, side_files):
    """The folded G_ema as g_ema and g, the file's D (when it has one) as d; (G, folded, notes)."""
    import torch
    from stylegan2_ada.checkpoint import atomic_write, save_rosinality

    from . import export as exporting
    extras = {}
    G, folded = exporting.fold(model, manager, extras)
    D = model.run.D
    notes = save_rosinality(out, G.cpu(), D=D.cpu() if D is not None else None)
    if D is None:
        notes.append('no D in the network file, so no d written (the papers\' fine-tuning scripts need one)')
    for name, data in extras.items():
        with atomic_write(exporting.side_file(out, name)) as file:
            torch.save(data, file)
        side_files.append(exporting.side_file(out, name))
    return G, folded, notes


@click.command()
# Input and output.
@click.option('--network', help='Trained network: gda snapshot, NVIDIA pickle, path or URL', metavar='PATH', required=True)
@click.option('--out',     help='Output file (read by stylegan2_ada.load)', metavar='FILE', required=True)
@click.option('--format', 'fmt', help='gda: state_dict with kwargs; rosinality: {g_ema, g, d, latent_avg} for rosinality/stylegan2-pytorch code',
              type=click.Choice(['gda', 'rosinality']), default='gda', show_default=True)
# Execution.
@click.option('--device',  help='Torch device', metavar='DEV', default='cpu', show_default=True)
def export(network, out, fmt, device):
    """Fold the plugins' inference behaviour into plain weights and write G_ema.

    \b
    Example:
      gda export --network runs/00000-target-fewshot-batch4/network-snapshot-000020.pkl --out G.pt
      gda export --network snapshot.pkl --out adapted.pt --format rosinality
    """
    from . import export as exporting
    from .generate import open_model
    manager = default_manager()
    model = open_model(network, device=device, manager=manager)
    side_files, notes = [], []
    if fmt == 'rosinality':
        G, folded, notes = export_rosinality(model, manager, out, side_files)
    else:
        G, folded = exporting.export(model, manager, out, side_files)
    others = [record['name'] for record in model.plugins if record['name'] not in folded]
    notes = ([f'folded in: {", ".join(folded)}'] if folded else []) + \
        ([f'nothing to fold: {", ".join(others)}'] if others else []) + \
        ([f'with {", ".join(side_files)}'] if side_files else []) + notes
    kind = 'rosinality checkpoint' if fmt == 'rosinality' else 'generator'
    click.echo(f'Wrote {out}: {G.img_resolution}px {kind}' + (f' ({"; ".join(notes)})' if notes else ''))
