"""Generation from a trained network with its plugins' inference behaviour; `pairs` for --pairs/SCS.

`open_model(path)` re-creates the snapshot's plugins by entry point (mode 'generate': construction
hooks without a dataset, no setup), restores their modules (the EMA twins' values, since G_ema is
what is rendered) and their state, and installs the reparams on G_ema. Rendering follows
docs/hooks.md: mapping (with truncation) -> the 'generate' w-transforms -> synthesis. The source
pipeline is G_s with only the transforms whose target is 'both', so `pairs` feeds one z through both.
"""

import dataclasses
from typing import Any, List, Optional

import numpy as np
import torch

import stylegan2_ada
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import Extensions, Synth, owner_of
from stylegan2_ada.reparam import chain, resolve_layer, set_weight_reparam

from . import composition
from .plugins import PluginError, default_manager
from .run_context import RunContext


@dataclasses.dataclass
class Model:
    """A network opened for rendering: G (the adapted G_ema, reparams installed), G_s (the
    source, or None), the plugins' Extensions and the run context they were built with."""
    G: torch.nn.Module
    G_s: Optional[torch.nn.Module]
    extensions: Extensions
    run: RunContext
    plugins: List[dict]
    device: torch.device
    source_info: Optional[dict] = None
    by_plugin: Any = None

    def transforms(self, source=False):
        """The generate-mode w-transform chain: all of them, or only the 'both' ones for G_s."""
        return [t.module for t in self.extensions.w_transforms
                if 'generate' in t.modes and (not source or t.target == 'both')]

    def default_c(self, n, seed=0):
        """c for n images: the conditioning's infer_c, else zeros (unconditional or no class)."""
        conditioning = self.extensions.exclusive('conditioning')
        if conditioning is not None and conditioning.infer_c is not None:
            generator = torch.Generator().manual_seed(seed)
            return conditioning.infer_c(n, generator).to(self.device, torch.float32)
        return torch.zeros([n, self.G.c_dim], device=self.device)

    def synthesize(self, net, z, c=None, *, it=None, mixing=False, noise_mode='random',
                   features=None, mode='generate'):
        """The renderer behind run.synthesize in generate mode (no grad, no mixing)."""
        source = not isinstance(net, str)
        G = net if source else self.G
        c = self.default_c(len(z)) if c is None else c
        with torch.no_grad():
            return _render(G, z.to(self.device), c.to(self.device), self.transforms(source),
                           1.0, noise_mode, features)


def _render(G, z, c, transforms, truncation_psi, noise_mode, features=None):
    c = c[:, :G.c_dim] if G.c_dim == 0 else c
    ws = G.mapping(z, c, truncation_psi=truncation_psi)
    for transform in transforms:
        ws = transform(ws, None)
    if features:
        img, feats = G.synthesis(ws, return_features=features, noise_mode=noise_mode)
        return Synth(img, ws, feats)
    return Synth(G.synthesis(ws, noise_mode=noise_mode), ws, {})


def module_keys(ext):
    """{key: module} of plugin modules, named as the training loop names them in its state
    (`<field>/<owner>/<name>`, `weight_reparam/<i>/<path>`); a module inside one already named is
    part of it. tests/gda_core/test_plugins_generate.py checks this against the loop's names."""
    items = [(f"param_groups/{owner_of(g, 'param_groups', i)}/{g.name}", g.module)
             for i, g in enumerate(ext.param_groups)]
    items += [(f"d_heads/{owner_of(h, 'd_heads', i)}/{h.name}", h.module)
              for i, h in enumerate(ext.d_heads)]
    items += [(f"w_transforms/{owner_of(t, 'w_transforms', i)}/{t.name}", t.module)
              for i, t in enumerate(ext.w_transforms)]
    items += [(f'weight_reparam/{i}/{path}', f)
              for i, mapping in enumerate(ext.weight_reparam) for path, f in mapping.items()]
    keys, covered = {}, set()
    for key, module in items:
        if isinstance(module, torch.nn.Module) and id(module) not in covered:
            keys[key] = module
            covered.update(id(sub) for sub in module.modules())
    return keys


def restore_modules(ext, loop_state, device):
    """Load the plugin modules' saved state, preferring the EMA twin's (what G_ema renders with)."""
    modules, twins = loop_state.get('modules', {}), loop_state.get('twins', {})
    for key, module in module_keys(ext).items():
        state = twins.get(key, modules.get(key))
        if state is None:
            raise UserError(f'the snapshot holds no state for the plugin module {key}; it was '
                            f'written by a different version of that plugin')
        module.load_state_dict(state)
        module.to(device).eval().requires_grad_(False)


def install_reparams(ext, G):
    by_path = {}
    for mapping in ext.weight_reparam:
        for path, f in mapping.items():
            if path.startswith('G.'):
                by_path.setdefault(path, []).append(f)
    for path, fns in by_path.items():
        _, layer = resolve_layer(dict(G=G), path)
        set_weight_reparam(layer, chain(fns))


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
    restore_modules(ext, loop_state, device)
    install_reparams(ext, G)
    model = Model(G, G_s, ext, run, [entry.record() for entry in active], device,
                  source_info=gda.get('source'), by_plugin=by_plugin)
    run.attach(model, G)
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
    if source:
        if model.G_s is None:
            raise UserError('this model was opened without its source generator')
        return _render(model.G_s, z, c, model.transforms(source=True), truncation_psi,
                       noise_mode).img
    return _render(model.G, z, c, model.transforms(), truncation_psi, noise_mode).img


@torch.no_grad()
def pairs(model, z, c=None, *, truncation_psi=1.0, noise_mode='const'):
    """(source images, adapted images) for the same z: G_s through the 'both' w-transforms, the
    adapted G_ema through all generate-mode transforms; each truncated towards its own w_avg.
    Open the model with need_source=True. Used by `gda generate --pairs` and the SCS metric."""
    z = z.to(model.device, torch.float32)
    c = model.default_c(len(z)) if c is None else c.to(model.device, torch.float32)
    return (render(model, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode, source=True),
            render(model, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode))
