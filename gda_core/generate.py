"""Generation from a trained network with its plugins' inference behaviour; `pairs` for --pairs/SCS.

`open_model(path)` re-creates the snapshot's plugins by entry point (mode 'generate': construction
hooks without a dataset, no setup) and applies their extensions to G_ema through the engine's
ExtendedNetworks (stylegan2_ada/extended.py: modules restored with the EMA twins' values, since
G_ema is what is rendered; reparams installed), then restores the plugins' state. Rendering is
ExtendedNetworks.synthesize: mapping (with truncation) -> the 'generate' w-transforms ->
synthesis. The source pipeline is G_s with only the transforms whose target is 'both', so `pairs`
feeds one z through both.
"""

import dataclasses
from typing import Any, List, Optional

import numpy as np
import torch

import stylegan2_ada
from stylegan2_ada.errors import UserError
from stylegan2_ada.extended import ExtendedNetworks

from . import composition
from .plugins import PluginError, default_manager
from .run_context import RunContext


@dataclasses.dataclass
class Model:
    """A network opened for rendering: `nets` (the adapted G_ema with the plugins' extensions
    applied), G_s (the source, or None), the run context the plugins were built with, and their
    snapshot records. A training run's live networks make one too (`gda train --metrics`)."""
    nets: ExtendedNetworks
    G_s: Optional[torch.nn.Module]
    run: RunContext
    plugins: List[dict]
    device: torch.device
    source_info: Optional[dict] = None
    by_plugin: Any = None

    @property
    def G(self):
        """The adapted generator (the snapshot's G_ema, reparams installed)."""
        return self.nets.G_ema

    @property
    def extensions(self):
        return self.nets.ext

    def default_c(self, n, seed=0):
        """c for n images: the conditioning's infer_c, else zeros (unconditional or no class)."""
        conditioning = self.extensions.exclusive('conditioning')
        if conditioning is not None and conditioning.infer_c is not None:
            generator = torch.Generator().manual_seed(seed)
            return conditioning.infer_c(n, generator).to(self.device, torch.float32)
        return torch.zeros([n, self.G.c_dim], device=self.device)


def source_generator(gda):
    """The frozen source G of a snapshot: stored in it, else loaded by reference (sha256 checked)."""
    if gda.get('source_G') is not None:
        return gda['source_G']
    source = gda.get('source')
    if not source:
        raise UserError('this network has no source generator (trained with --source none, or '
                        'not a gda snapshot), so there is nothing to pair it with')
    data = stylegan2_ada.load(source['reference'])
    if data['origin']['sha256'] != source['sha256']:
        raise UserError(f'the source {source["reference"]} has changed since training (sha256 '
                        f'{data["origin"]["sha256"][:12]}... instead of {source["sha256"][:12]}...)')
    return data.get('G_ema') or data['G']


def active_from_snapshot(manager, records):
    """The snapshot's plugins as Active entries, with a clear error for one not installed."""
    active = []
    for record in records:
        name = record['name']
        if name not in manager.plugins and name not in manager.broken:
            dist = record.get('distribution') or name
            raise PluginError(f'this network was trained with plugin {name!r} from distribution '
                              f'{dist!r} {record.get("version") or ""}, which is not installed '
                              f'here; install it (pip install {dist}) to use the network')
        plugin = manager.get(name, purpose='the snapshot\'s plugin')
        options, origin = composition.parse_options(plugin, dict(record.get('options') or {}))
        active.append(composition.Active(plugin, options, origin, {}))
    return active


def open_model(source, device='cpu', manager=None, need_source=False):
    """Open a gda snapshot (or any network file stylegan2_ada.load reads) for rendering."""
    device = torch.device(device)
    manager = manager if manager is not None else default_manager()
    data = stylegan2_ada.load(source)
    G = data.get('G_ema') or data.get('G')
    if G is None:
        raise UserError(f'{source} holds no generator')
    gda = data.get('gda') or {}
    G_s = source_generator(gda) if need_source else gda.get('source_G')
    G = G.to(device).eval().requires_grad_(False)
    G_s = G_s.to(device).eval().requires_grad_(False) if G_s is not None else None
    loop_state = gda.get('loop') or {}
    core = loop_state.get('core_options') or {}

    active = active_from_snapshot(manager, gda.get('plugins') or [])
    run = RunContext('generate', G=G, D=data.get('D'), G_s=G_s, device=device,
                     seed=core.get('seed', 0), core=core)
    for entry in active:
        run.add_plugin(entry.name, entry.options)
    ext, by_plugin = composition.build_extensions(manager, active, run, with_owners=True)
    ext.check()
    run.restore_anchors(loop_state.get('anchors'))
    nets = ExtendedNetworks(ext, G, device=device)
    nets.load_state(loop_state.get('modules', {}), loop_state.get('twins', {}),
                    'it was written by a different version of that plugin')
    model = Model(nets, G_s, run, [entry.record() for entry in active], device,
                  source_info=gda.get('source'), by_plugin=by_plugin)
    nets.default_c = lambda n, it: model.default_c(n)
    run.attach(nets, G)
    for entry, record in zip(active, gda.get('plugins') or []):
        manager.call(entry.name, 'load_state_dict', run=run.for_plugin(entry.name),
                     state=dict(record.get('state') or {}))
    return model


def seed_latents(seeds, z_dim):
    """z for each seed exactly as NVIDIA's generate.py draws it: RandomState(seed).randn(1, z_dim)."""
    return torch.from_numpy(np.stack([np.random.RandomState(seed).randn(z_dim) for seed in seeds])
                            ).to(torch.float32)


@torch.no_grad()
def render(model, z, c=None, *, truncation_psi=1.0, noise_mode='const', source=False):
    """Images [N, C, H, W] in [-1, 1] from the adapted G (or, source=True, from G_s)."""
    z = z.to(model.device, torch.float32)
    c = model.default_c(len(z)) if c is None else c.to(model.device, torch.float32)
    if source and model.G_s is None:
        raise UserError('this model was opened without its source generator')
    return model.nets.synthesize(model.G_s if source else 'G_ema', z, c, noise_mode=noise_mode,
                                 truncation_psi=truncation_psi, mode='generate').img


@torch.no_grad()
def pairs(model, z, c=None, *, truncation_psi=1.0, noise_mode='const'):
    """(source images, adapted images) for the same z: G_s through the 'both' w-transforms, the
    adapted G_ema through all generate-mode transforms; each truncated towards its own w_avg.
    Open the model with need_source=True. Used by `gda generate --pairs` and the SCS metric."""
    z = z.to(model.device, torch.float32)
    c = model.default_c(len(z)) if c is None else c.to(model.device, torch.float32)
    return (render(model, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode, source=True),
            render(model, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode))
