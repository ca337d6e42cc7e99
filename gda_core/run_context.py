"""The run context handed to plugin hooks (docs/hooks.md §2-3): networks, options, host services.

One RunContext per run, shared by every plugin; each hook receives a PluginRun, the same context
seen from one plugin (`run.options`, `run.ns` are that plugin's), so plugin code needs no module
globals and a process may hold two runs. Services that two plugins share without importing each
other (latent anchors, rendering with features) live here.
"""

import os
import types
import warnings
import zlib
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import ConflictError

MODES = ('train', 'resume', 'generate')


class OptionValues(Mapping):
    """A plugin's parsed options: read as options['name'] or options.name."""

    def __init__(self, values):
        self._values = dict(values)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f'no option {key!r} (options: {", ".join(self._values)})') from None

    def __repr__(self):
        return f'OptionValues({self._values!r})'


class PluginView:
    """One plugin's place in the run: its options and a namespace for its per-run objects."""

    def __init__(self, name, options):
        self.name = name
        self.options = OptionValues(options)
        self.ns = types.SimpleNamespace()
        self.effective = {}   # option -> the value a None default resolved to (run.effective)


class RunContext:
    """What construction, setup and lifecycle hooks see; built by the host for each run.

    mode is 'train', 'resume' or 'generate' (generate and export); G_s is the frozen source (None
    with --source none); G_ema is None until construction is applied; dataset is None when
    generating. `core` holds the resolved core options.
    """

    def __init__(self, mode, G, D=None, G_s=None, dataset=None, device='cpu', seed=0, core=None,
                 rank=0, world_size=1):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.mode = mode
        self.G, self.D, self.G_s, self.G_ema = G, D, G_s, None
        self.dataset = dataset
        self.device = torch.device(device)
        self.seed = seed
        self.core = dict(core or {})
        self.rank, self.world_size = rank, world_size
        self._views: Dict[str, PluginView] = {}
        self._anchor_requests = []     # (plugin, n)
        self._anchors: Optional[torch.Tensor] = None
        self._renderer = None          # the run's ExtendedNetworks (stylegan2_ada/extended.py)
        self._gen_c = None             # the training c (training only)
        self._report = None

    # -- plugins ----------------------------------------------------------------------------------

    def add_plugin(self, name, options):
        self._views[name] = PluginView(name, options)
        return self.for_plugin(name)

    def plugin(self, name) -> PluginView:
        """Plugin `name`'s options and namespace (KeyError-free: a clear error if not active)."""
        if name not in self._views:
            raise UserError(f'plugin {name!r} is not active in this run '
                            f'(active: {", ".join(self._views) or "none"})')
        return self._views[name]

    def for_plugin(self, name):
        return PluginRun(self, self.plugin(name))

    def effective_options(self, name):
        """Plugin `name`'s options with the values it reported through run.effective."""
        view = self.plugin(name)
        return {key: view.effective.get(key, value) for key, value in view.options.items()}

    @property
    def plugin_names(self):
        return list(self._views)

    # -- attaching the engine ---------------------------------------------------------------------

    def attach(self, renderer, G_ema, report=None, gen_c=None):
        """Called once construction is applied: `renderer` (the run's ExtendedNetworks) now
        renders; `gen_c(n, it)` is the training loop's c for fakes."""
        self._renderer = renderer
        self.G_ema = G_ema
        self._report = report
        self._gen_c = gen_c

    # -- latent anchors ---------------------------------------------------------------------------

    def request_anchors(self, n=None, owner='host'):
        """Ask for the shared latent anchors, at construction. n None: len(dataset) (CDC's n_train).
        Every request must agree on n; anchors are drawn once, from (seed, 'anchors'), so adding
        or removing a plugin never changes them."""
        if self._anchors is not None:
            raise UserError(f'{owner!r} requested anchors after they were drawn; request them in a '
                            f'construction hook')
        if n is not None and (not isinstance(n, int) or n < 1):
            raise UserError(f'{owner!r} requested {n!r} anchors; give a positive int or None')
        self._anchor_requests.append((owner, n))

    def anchor_count(self):
        """The agreed anchor count, None if nobody asked; ConflictError if requests disagree."""
        counts = {}
        for owner, n in self._anchor_requests:
            if n is None:
                if self.dataset is None:
                    continue   # generate mode: the snapshot's anchors decide
                n = len(self.dataset)
            counts.setdefault(n, []).append(owner)
        if len(counts) > 1:
            described = '; '.join(f'{", ".join(map(repr, owners))} want {n}'
                                  for n, owners in sorted(counts.items()))
            raise ConflictError(f'plugins disagree on the number of latent anchors ({described}); '
                                f'set their options so they agree')
        return next(iter(counts), None)

    def draw_anchors(self, z_dim):
        """Draw the anchors once if any plugin asked for them (after the conflict checks)."""
        n = self.anchor_count()
        if n is None:
            return None
        generator = torch.Generator().manual_seed(_seed_from(self.seed, 'anchors'))
        self._anchors = torch.randn([n, z_dim], generator=generator).to(self.device)
        return self._anchors

    def anchor_state(self):
        """The anchors for the snapshot (CPU), or None when no plugin asked for them."""
        return None if self._anchors is None else self._anchors.detach().cpu()

    def restore_anchors(self, anchors):
        self._anchors = None if anchors is None else torch.as_tensor(anchors).to(self.device)

    @property
    def anchors(self) -> torch.Tensor:
        """The [n, z_dim] anchors, identical on every process (request them first)."""
        if self._anchors is None:
            raise UserError('no latent anchors: call run.request_anchors() in a construction hook')
        return self._anchors

    def near_anchors(self, n, std, rng):
        """anchors[randint] + std * N(0, I), drawn from `rng` (patchd: std 0.1)."""
        anchors = self.anchors
        picks = torch.randint(len(anchors), [n], generator=rng)
        noise = torch.randn([n, anchors.shape[1]], generator=rng)
        return anchors[picks.to(anchors.device)] + std * noise.to(anchors.device)

    # -- rendering --------------------------------------------------------------------------------

    def synthesize(self, net, z, c=None, *, it=None, mixing=False, noise_mode='random',
                   features=None, mode='train'):
        """Render with the run's transforms and reparams -> Synth(img, ws, features).

        net 'source' (G_s, no grad, 'both' transforms only), 'G' (live, with grad) or 'G_ema'
        (no grad, EMA twins). c None: the run's training c. Never moves w_avg.
        """
        if net not in ('source', 'G', 'G_ema'):
            raise ValueError(f"net must be 'source', 'G' or 'G_ema', got {net!r}")
        if self._renderer is None:
            raise UserError('run.synthesize is available from setup on, not during construction')
        target = net
        if net == 'source':
            if self.G_s is None:
                raise UserError('this run has no source generator (--source none)')
            target = self.G_s
        return self._renderer.synthesize(target, z, c, it=it, mixing=mixing,
                                         noise_mode=noise_mode, features=features, mode=mode)

    def gen_c(self, n, it):
        """The run's training c for n fakes, drawn once from `it.rng`, so that a loss term can
        feed the same (z, c) to several networks (synthesize with c=None draws a new c per call).
        Training only; [n, 0] when G is unconditional."""
        if self._gen_c is None:
            raise UserError('run.gen_c is available while training, from setup on')
        if self.G.c_dim == 0:
            return torch.zeros([n, 0], device=self.device)
        return self._gen_c(n, it)

    # -- other services ---------------------------------------------------------------------------

    def detector(self, name_or_path):
        """NVIDIA's TorchScript detectors ('vgg16', 'inception') or a TorchScript file by path."""
        from stylegan2_ada import detectors
        if name_or_path in detectors.DETECTORS:
            return detectors.load_detector(name_or_path, device=self.device)
        if not os.path.isfile(name_or_path):
            raise UserError(f'{name_or_path!r} is neither a detector name '
                            f'({", ".join(detectors.DETECTORS)}) nor a file')
        try:
            with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript; detectors are TorchScript
                warnings.simplefilter('ignore', DeprecationWarning)
                return torch.jit.load(name_or_path, map_location=self.device).eval()
        except (RuntimeError, ValueError) as error:
            raise UserError(f'{name_or_path} is not a TorchScript file: '
                            f'{str(error).splitlines()[0]}') from None

    def broadcast(self, obj):
        """Rank 0's object on every process."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def report(self, name, value):
        """Add a value to the tick statistics (stats.jsonl)."""
        if self._report is not None:
            self._report(name, value)


class PluginRun:
    """The run seen from one plugin: `options`, `ns` and `name` are its own; the rest is shared."""

    def __init__(self, run, view):
        object.__setattr__(self, '_run', run)
        object.__setattr__(self, '_view', view)

    @property
    def name(self):
        return self._view.name

    @property
    def options(self):
        return self._view.options

    @property
    def ns(self):
        return self._view.ns

    def request_anchors(self, n=None):
        self._run.request_anchors(n, owner=self._view.name)

    def effective(self, option, value):
        """Say what an option left at None actually is in this run (e.g. patchd's anchors: the
        number of target images), so that the log and training_options.json show the value
        used; the option itself stays None, so a resume resolves it the same way."""
        self._view.effective[option.replace('-', '_')] = value

    def __getattr__(self, key):
        return getattr(self._run, key)

    def __setattr__(self, key, value):
        raise AttributeError(f'run.{key} is read-only; keep per-run objects in run.ns')


def _seed_from(seed, label):
    """A 63-bit seed from (run seed, label): independent streams that never shift each other."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(label.encode())]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


__all__ = ['RunContext', 'PluginRun', 'PluginView', 'OptionValues', 'MODES']
