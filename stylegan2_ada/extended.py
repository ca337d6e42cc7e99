"""Networks with a run's `Extensions` applied: the one place that knows which modules the extensions
add (and their EMA twins), which weight reparametrisations are installed, which w-transforms each
pipeline chains, and how to render through all of that (docs/hooks.md §5).

The training loop, `gda generate`, `gda export`, the metrics and comparison.png all render through
an `ExtendedNetworks`, so a pipeline is written down once. Built with the live G (training), it
makes EMA twins of the G-side parameter groups and G_ema renders with them; built with G_ema alone
(inference), the modules themselves hold the EMA values saved in the snapshot.
"""

import copy

import torch

from .errors import UserError
from .extensions import Extensions, Synth, owner_of
from .reparam import chain, resolve_layer, set_weight_reparam

NETS = ('G', 'G_ema', 'source')


def w_transform_chain(ext, mode, source=False, twin=None):
    """The w-transforms of one pipeline, in plugin order: `mode` 'train' or 'generate'; the source
    pipeline keeps only the 'both' ones; `twin` maps a live module to what renders in its place."""
    return [twin(t.module) if twin else t.module for t in ext.w_transforms
            if mode in t.modes and (not source or t.target == 'both')]


def render(G, z, c, transforms=(), it=None, style_mixing_prob=0.0, noise_mode='random',
           features=None, skip_w_avg_update=False, ws_grad=False, truncation_psi=1):
    """mapping (with truncation) -> style mixing -> w transforms -> synthesis (reparams act inside).

    ws_grad makes ws differentiable even when nothing before synthesis trains (the path-length
    penalty differentiates the image with respect to the ws after the transforms).
    """
    ws = G.mapping(z, c, truncation_psi=truncation_psi, skip_w_avg_update=skip_w_avg_update)
    if style_mixing_prob > 0:
        cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
        mix = torch.rand([], device=ws.device) < style_mixing_prob
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, ws.shape[1]))
        ws[:, cutoff:] = G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)[:, cutoff:]
    for transform in transforms:
        ws = transform(ws, it)
    if ws_grad and not ws.requires_grad:
        ws = ws.detach().requires_grad_(True)
    if features:
        img, feats = G.synthesis(ws, return_features=features, noise_mode=noise_mode)
        return Synth(img, ws, feats)
    return Synth(G.synthesis(ws, noise_mode=noise_mode), ws, {})


def extension_modules(ext):
    """{key: module} of every torch module the extensions add, keyed as snapshots store them
    (`<field>/<owner>/<name>`, `weight_reparam/<index>/<path>`); a module inside one already
    named is part of it."""
    items = [(f"param_groups/{owner_of(g, 'param_groups', i)}/{g.name}", g.module)
             for i, g in enumerate(ext.param_groups)]
    items += [(f"d_heads/{owner_of(h, 'd_heads', i)}/{h.name}", h.module)
              for i, h in enumerate(ext.d_heads)]
    items += [(f"w_transforms/{owner_of(t, 'w_transforms', i)}/{t.name}", t.module)
              for i, t in enumerate(ext.w_transforms)]
    items += [(f'weight_reparam/{i}/{path}', f)
              for i, mapping in enumerate(ext.weight_reparam) for path, f in mapping.items()]
    modules, covered = {}, set()
    for key, module in items:
        if isinstance(module, torch.nn.Module) and id(module) not in covered:
            modules[key] = module
            covered.update(id(sub) for sub in module.modules())
    return modules


class ExtendedNetworks:
    """G_ema (and, when training, the live G and D) with the extensions' modules held, EMA twins
    made, reparams installed; `synthesize` renders any pipeline of the run.

    `default_c(n, it)` gives c when a caller passes None to a conditional network (the loop's
    training c, or the inference c); `style_mixing` is the probability `mixing=True` renders with.
    The extensions must have been checked (Extensions.check, the loop's misfit checks) before.
    """

    def __init__(self, extensions, G_ema, G=None, D=None, device='cpu', style_mixing=0.0,
                 default_c=None):
        self.ext = extensions if extensions is not None else Extensions()
        self.G, self.D, self.G_ema = G, D, G_ema
        self.device = torch.device(device)
        self.style_mixing = style_mixing
        self.default_c = default_c
        self.modules = extension_modules(self.ext)
        for module in self.modules.values():
            module.to(self.device).requires_grad_(False)
        self.twins = {}       # id(live module or submodule) -> its twin
        self.ema_pairs = []   # (key, live, twin), lerped with G_ema's beta
        if G is not None:
            self._make_twins()
        self._install_reparams()

    @property
    def training(self):
        """Whether the live networks are here (else this renders a snapshot's G_ema only)."""
        return self.G is not None

    # -- twins and reparams -----------------------------------------------------------------------

    def _make_twins(self):
        """EMA twins of the G-side parameter groups with ema=True; G_ema renders with them."""
        keys = {id(module): key for key, module in self.modules.items()}
        for group in self.ext.param_groups:
            if group.network == 'G' and group.ema:
                twin = copy.deepcopy(group.module).requires_grad_(False)
                self.ema_pairs.append((keys[id(group.module)], group.module, twin))
                for name, sub in group.module.named_modules():
                    self.twins[id(sub)] = twin.get_submodule(name)
        ema_params = {id(p) for _, live, _ in self.ema_pairs for p in live.parameters()}
        g_side = [t.module for t in self.ext.w_transforms]
        g_side += [f for mapping in self.ext.weight_reparam for path, f in mapping.items()
                   if path.startswith('G.')]
        for module in g_side:
            if isinstance(module, torch.nn.Module) and id(module) not in self.twins and \
                    any(id(p) in ema_params for p in module.parameters()):
                raise UserError(f'{type(module).__name__} holds parameters of an EMA parameter '
                                f'group without being that group\'s module or inside it; list '
                                f'the module itself in param_groups')

    def twin(self, module):
        """What G_ema uses in place of a live extension module: its EMA twin, or the module."""
        return self.twins.get(id(module), module)

    def _install_reparams(self):
        """Reparams of one layer compose in plugin order; G_ema's layer gets the twins. Without
        live networks only G_ema's layers are set."""
        networks = dict(G=self.G, D=self.D) if self.training else dict(G=self.G_ema)
        by_path = {}
        for mapping in self.ext.weight_reparam:
            for path, f in mapping.items():
                if self.training or path.startswith('G.'):
                    by_path.setdefault(path, []).append(f)
        for path, fns in by_path.items():
            net, layer = resolve_layer(networks, path)
            set_weight_reparam(layer, chain(fns))
            if net == 'G' and self.training:
                _, ema_layer = resolve_layer(dict(G=self.G_ema), path)
                set_weight_reparam(ema_layer, chain(self.twin(f) for f in fns))

    def reset_twins(self):
        """Twins equal to their live modules (setup may have changed them since the copy)."""
        for _, live, twin in self.ema_pairs:
            twin.load_state_dict(live.state_dict())

    def tensors(self):
        """Every parameter and buffer of the extension modules and twins (for a broadcast)."""
        modules = [*self.modules.values(), *(twin for _, _, twin in self.ema_pairs)]
        return [t for m in modules for t in list(m.parameters()) + list(m.buffers())]

    # -- state ------------------------------------------------------------------------------------

    def state(self):
        """(modules, twins): the state_dicts by key, as snapshots keep them."""
        return ({key: dict(module.state_dict()) for key, module in self.modules.items()},
                {key: dict(twin.state_dict()) for key, _, twin in self.ema_pairs})

    def load_state(self, modules, twins, hint):
        """Load what state() saved; UserError ending with `hint` for a key not saved. Without live
        networks each module takes its twin's state where one was saved (what G_ema rendered
        with) and is put in eval mode."""
        if not self.training:
            for key, module in self.modules.items():
                state = twins.get(key, modules.get(key))
                if state is None:
                    raise UserError(f'the snapshot holds no state for the plugin module {key}; '
                                    f'{hint}')
                module.load_state_dict(state)
                module.eval()
            return
        wanted = [('module', modules, self.modules.items()),
                  ('twin', twins, [(key, twin) for key, _, twin in self.ema_pairs])]
        for kind, saved, items in wanted:
            for key, module in items:
                if key not in saved:
                    raise UserError(f'the saved loop state has no {kind} state for {key}; {hint}')
                module.load_state_dict(saved[key])

    # -- rendering --------------------------------------------------------------------------------

    def w_transforms(self, mode, source=False, ema=False):
        """The transform chain of a pipeline (see w_transform_chain); ema=True uses the twins."""
        return w_transform_chain(self.ext, mode, source, self.twin if ema else None)

    def synthesize(self, net, z, c=None, *, it=None, mixing=False, noise_mode='random',
                   features=None, mode='train', truncation_psi=1):
        """Render with the run's transforms and reparams -> Synth(img, ws, features).

        net 'G' is the live G (with grad); 'G_ema' the EMA G with the twins (no grad); a network
        object is a frozen source (no grad, 'both' transforms; twins in 'generate' mode). Without
        live networks 'G' means G_ema and every pipeline is the 'generate' one. c None: the
        default_c for a conditional network. Never moves w_avg.
        """
        source = not isinstance(net, str)
        if not source and net not in ('G', 'G_ema'):
            raise ValueError(f"net must be 'G', 'G_ema' or a network, got {net!r}")
        G = net if source else (self.G if net == 'G' and self.training else self.G_ema)
        mode = mode if self.training else 'generate'
        if c is None and G.c_dim > 0:
            c = self.default_c(len(z), it)
        c = torch.zeros([len(z), 0]) if G.c_dim == 0 else c   # an unconditional net ignores c
        transforms = self.w_transforms(mode, source=source,
                                       ema=net == 'G_ema' or (source and mode == 'generate'))
        grad = net == 'G' and self.training and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            return render(G, z.to(self.device), c.to(self.device, torch.float32), transforms, it,
                          self.style_mixing if mixing else 0.0, noise_mode=noise_mode,
                          features=features, skip_w_avg_update=True,
                          truncation_psi=truncation_psi)


__all__ = ['ExtendedNetworks', 'extension_modules', 'render', 'w_transform_chain']
