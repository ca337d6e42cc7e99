"""`gda export`: the adapted G_ema as a plain NVIDIA-layout generator, plugins folded into weights.

Each plugin folds its inference effect (an adaptor into the affines, a reparam into W) into a copy
of G_ema built without plugin slots, in plugin order. A plugin whose effect cannot be folded raises
NotFoldable, and one that changes inference without implementing `fold` is refused as well: an
export never silently drops a plugin's effect.
"""

import copy
import os

import torch

from gda_hooks import NotFoldable
from stylegan2_ada.checkpoint import atomic_write, export_state_dict
from stylegan2_ada.errors import UserError
from stylegan2_ada.networks import Generator


def plain_copy(G):
    """A fresh Generator with G's kwargs and weights, and none of its plugin slots."""
    plain = Generator(**copy.deepcopy(G.init_kwargs)).to(next(G.parameters()).device)
    plain.load_state_dict(G.state_dict())
    return plain.eval().requires_grad_(False)


def changes_inference(contributions):
    """What in a plugin's contributions acts when generating (and so must be folded)."""
    effects = [f'w transform {t.name!r}' for t in contributions.get('w_transforms', [])
               if 'generate' in t.modes]
    effects += [f'reparam of {path}' for mapping in contributions.get('weight_reparam', [])
                for path in mapping if path.startswith('G.')]
    return effects


def fold(model, manager, extras=None):
    """(plain generator with every plugin's effect folded in, names of the plugins that folded).

    A plugin's fold may return plain data that weights cannot hold (disp's prior bank); it is put
    in `extras` ({plugin: data}) when given.
    """
    G = plain_copy(model.G)
    folded = []
    for record in model.plugins:
        name = record['name']
        if manager.implements(name, 'fold'):
            try:
                data = manager.call(name, 'fold', run=model.run.for_plugin(name), G=G)
                if data is not None and extras is not None:
                    extras[name] = data
            except NotFoldable as error:
                raise UserError(f'plugin {name!r} cannot be folded into plain weights: {error}') \
                    from None
            folded.append(name)
            continue
        effects = changes_inference(model.by_plugin.get(name, {}))
        if effects:
            raise UserError(f'plugin {name!r} changes generation ({", ".join(effects)}) but does '
                            f'not implement fold, so no plain generator can reproduce it')
    return G, folded


def side_file(path, plugin):
    """Where export writes a plugin's side data: G.pt -> G.disp.pt."""
    stem, extension = os.path.splitext(os.fspath(path))
    return f'{stem}.{plugin}{extension or ".pt"}'


def export(model, manager, path, side_files=None):
    """Write the folded G as an export_state_dict file (G_ema_class/_kwargs/_state), and the data
    a plugin's fold returned beside it (torch.save of plain data, see side_file); returns
    (G, names of the plugins that folded their effect in). `side_files` collects those paths."""
    extras = {}
    G, folded = fold(model, manager, extras)
    export_state_dict(path, G_ema=G)
    for name, data in extras.items():
        with atomic_write(side_file(path, name)) as file:
            torch.save(data, file)
        if side_files is not None:
            side_files.append(side_file(path, name))
    return G, folded
