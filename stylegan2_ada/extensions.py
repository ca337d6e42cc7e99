"""The engine side of the injection points of docs/hooks.md §4: one `Extensions` field per point.

The engine knows nothing about plugins. The host fills an `Extensions` from the plugins' hooks: each
field is a list, in plugin order, of what the hook of the same name returned (None results left
out, list results concatenated). An empty `Extensions` is NVIDIA's StyleGAN2-ADA. Contributions may
name their plugin in `owner` (the dataclasses have the field; wrap a plain callable in `Hook`) so
that conflicts and logs can name it. `check()` finds the conflicts that need no networks; the loop
calls it, and finds the rest (freezing, parameter groups), before any work starts.
"""

from __future__ import annotations   # torch appears in annotations only: plugins stay cheap to import

import dataclasses
import fnmatch
from typing import TYPE_CHECKING, Any, Callable, Collection, Dict, FrozenSet, List, Optional, Tuple

from .errors import UserError

if TYPE_CHECKING:
    import torch

EXCLUSIVE = ('conditioning', 'adv_loss', 'latent_sampler', 'select_branch', 'augment_p')
TARGETS = ('adapted', 'both')
MODES = frozenset({'train', 'generate'})


class ConflictError(UserError):
    """Two plugins claim what only one may have; the message names both (exit status 2)."""


@dataclasses.dataclass
class Hook:
    """A plain callable contribution tagged with the plugin that gave it."""
    fn: Callable
    owner: Optional[str] = None

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def owner_of(item, field, index):
    """The plugin behind a contribution, or '<field>[<index>]' when it does not say."""
    return getattr(item, 'owner', None) or f'{field}[{index}]'


@dataclasses.dataclass
class Iteration:
    """What every per-iteration callable learns; built by the loop once per iteration.

    Anything random that must agree across processes is drawn from `rng` (z, anchors, layer
    picks): it is seeded from (run seed, index), so it is the same stream on every rank and
    replays exactly on resume without saved state.
    """
    index: int                   # iterations done before this one (0-based)
    cur_nimg: int                # real images shown to D before this iteration (all processes)
    batch_size: int              # global batch
    device: torch.device
    rng: torch.Generator         # CPU generator seeded from (run seed, index)
    batch_gpu: int = 0           # per accumulation round
    rank: int = 0
    world_size: int = 1
    phase: Optional[str] = None  # 'Gmain' | 'Greg' | 'Dmain' | 'Dreg' ('Gboth'/'Dboth' unlazy)
    branch: Optional[str] = None  # from select_branch, fixed for the whole iteration
    augment_p: float = 0.0       # the AugmentPipe's p this iteration
    scratch: Dict[str, Any] = dataclasses.field(default_factory=dict)
    report: Callable[[str, Any], None] = lambda name, value: None   # into the tick stats


@dataclasses.dataclass
class Conditioning:
    """c for an unconditional source (DISP's C(x)); the engine adds G's embedding for it.

    real_c(raw_idx LongTensor [N]) -> [N, c_dim] is the reals' c; gen_c(n, it) -> [n, c_dim] the
    fakes' c (None: real_c of uniform raw indices drawn from it.rng, NVIDIA's rule for labels);
    infer_c(n, rng) -> [n, c_dim] is for `gda generate`.
    """
    c_dim: int
    real_c: Callable
    gen_c: Optional[Callable] = None
    infer_c: Optional[Callable] = None
    owner: Optional[str] = None


@dataclasses.dataclass
class FreezePolicy:
    """frozen(qualified name like 'G.mapping.fc0.weight') -> True to freeze that core parameter.

    `requires` lists names or fnmatch patterns that must train: a policy freezing one of them is a
    conflict naming both plugins.
    """
    frozen: Callable[[str], bool]
    requires: Collection[str] = ()
    owner: Optional[str] = None


@dataclasses.dataclass
class ParamGroup:
    """A plugin module that trains, and how: one extra group in its side's Adam.

    lr/betas None take the core's; lazy_reg scales them as the core's; ema (G side) keeps a twin
    for G_ema; start_iteration delays training (AdaFM's delay).
    """
    name: str
    module: torch.nn.Module
    network: str = 'G'
    lr: Optional[float] = None
    lr_multiplier: float = 1.0
    betas: Optional[Tuple[float, float]] = None
    lazy_reg: bool = True
    ema: bool = True
    start_iteration: int = 0
    owner: Optional[str] = None

    def __post_init__(self):
        if self.network not in ('G', 'D'):
            raise ValueError(f"ParamGroup {self.name!r}: network must be 'G' or 'D', "
                             f'got {self.network!r}')


@dataclasses.dataclass
class DHead:
    """module(logits [N,1], feats, c, it) -> Tensor on the D output.

    'replace' gives the D output for its branches (e.g. patch logits [N,1,h,w]); 'add' adds [N] or
    [N,1] to it. `features` are the D feature names it reads; branches None means every branch.
    """
    name: str
    module: Callable
    mode: str = 'replace'
    features: Tuple[str, ...] = ()
    branches: Optional[FrozenSet[str]] = None
    owner: Optional[str] = None

    def __post_init__(self):
        if self.mode not in ('replace', 'add'):
            raise ValueError(f"DHead {self.name!r}: mode must be 'replace' or 'add', "
                             f'got {self.mode!r}')
        self.features = tuple(self.features)
        if self.branches is not None:
            self.branches = frozenset(self.branches)

    def active(self, branch):
        return self.branches is None or branch in self.branches


@dataclasses.dataclass
class WTransform:
    """module(ws [N, num_ws, w_dim], it or None) -> ws, between style mixing and synthesis.

    target 'adapted': the trained G only (GenDA's adaptor); 'both': the source G too (RSSA's
    compression), so paired samples stay comparable. modes: 'train' (every render in the loop),
    'generate' (gda generate, fakes*.png, metrics).
    """
    name: str
    module: Callable
    target: str = 'adapted'
    modes: FrozenSet[str] = MODES
    owner: Optional[str] = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f'WTransform {self.name!r}: target must be one of {TARGETS}, '
                             f'got {self.target!r}')
        self.modes = frozenset(self.modes)
        if not self.modes or not self.modes <= MODES:
            raise ValueError(f'WTransform {self.name!r}: modes must be a non-empty subset of '
                             f'{sorted(MODES)}, got {sorted(self.modes)}')


@dataclasses.dataclass
class LatentBatch:
    """A phase's latents from latent_sampler: z [n, z_dim]; c None means gen_c."""
    z: torch.Tensor
    mixing: bool = True
    c: Optional[torch.Tensor] = None


@dataclasses.dataclass
class Synth:
    """A render: images, the ws after the transforms, and the requested feature maps."""
    img: torch.Tensor
    ws: torch.Tensor
    features: Dict[str, torch.Tensor]


@dataclasses.dataclass
class TickInfo:
    tick: int
    iteration: int
    cur_nimg: int
    kimg: float
    stats: Dict[str, float]
    run_dir: str


@dataclasses.dataclass
class SnapshotInfo:
    path: str
    kimg: float
    iteration: int


def _list():
    return dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Extensions:
    """The loop's injection points (docs/hooks.md §4); exclusive ones hold at most one entry."""
    conditioning: List[Conditioning] = _list()                   # exclusive
    weight_reparam: List[Dict[str, Callable]] = _list()          # {'G.synthesis.b64.conv0': f}
    freeze_policy: List[FreezePolicy] = _list()                  # frozen = union
    param_groups: List[ParamGroup] = _list()
    d_heads: List[DHead] = _list()
    adv_loss: List[Callable] = _list()         # exclusive: fn(kind, logits) -> per-element loss
    w_transforms: List[WTransform] = _list()   # chained
    latent_sampler: List[Callable] = _list()   # exclusive: fn(it, n) -> LatentBatch | None
    select_branch: List[Callable] = _list()    # exclusive: fn(it) -> str | None
    augmentations: List[Callable] = _list()    # chained before the AugmentPipe: fn(img, it)
    augment_p: List[Callable] = _list()        # exclusive: fn(it) -> p; the ADA controller is off
    g_loss_terms: List[Callable] = _list()     # fn(it) -> {name: weighted scalar}, once per iter
    on_tick: List[Callable] = _list()          # fn(TickInfo) -> {key: float} | None
    on_snapshot: List[Callable] = _list()      # fn(SnapshotInfo), rank 0, after the write

    def exclusive(self, field):
        """The single provider of an exclusive point, or None."""
        items = getattr(self, field)
        return items[0] if items else None

    def check(self):
        """Conflicts visible without the networks: two owners of an exclusive point, two
        'replace' heads whose branches overlap."""
        for field in EXCLUSIVE:
            items = getattr(self, field)
            if len(items) > 1:
                names = ' and '.join(repr(owner_of(item, field, i)) for i, item in enumerate(items))
                raise ConflictError(f'{names} both provide {field!r}, which only one plugin may '
                                    f'provide; use one of them')
        replace = [(i, h) for i, h in enumerate(self.d_heads) if h.mode == 'replace']
        for a, (i, first) in enumerate(replace):
            for j, second in replace[a + 1:]:
                if first.branches is None or second.branches is None or \
                        first.branches & second.branches:
                    overlap = ('every branch' if first.branches is None or second.branches is None
                               else f'branch(es) {sorted(first.branches & second.branches)}')
                    raise ConflictError(
                        f"D heads {first.name!r} ({owner_of(first, 'd_heads', i)}) and "
                        f"{second.name!r} ({owner_of(second, 'd_heads', j)}) both replace the D "
                        f'output on {overlap}; use one of them')


def trainable_mask(networks, policies):
    """The core parameters that train: all but those a policy freezes (frozen = union).

    A parameter that one policy `requires` and another freezes is a conflict naming both.
    """
    named = [(f'{net}.{name}', param) for net, module in networks.items()
             for name, param in module.named_parameters()]
    frozen_by = {}
    for index, policy in enumerate(policies):
        for qualname, _ in named:
            if qualname not in frozen_by and policy.frozen(qualname):
                frozen_by[qualname] = owner_of(policy, 'freeze_policy', index)
    for index, policy in enumerate(policies):
        owner = owner_of(policy, 'freeze_policy', index)
        for pattern in policy.requires:
            matches = [qualname for qualname, _ in named if fnmatch.fnmatchcase(qualname, pattern)]
            if not matches:
                raise UserError(f'{owner!r} requires {pattern!r} to train, but no parameter of G '
                                f'or D matches it; this plugin does not fit these networks')
            for qualname in matches:
                if qualname in frozen_by:
                    raise ConflictError(f'{owner!r} requires {qualname} to train but '
                                        f'{frozen_by[qualname]!r} freezes it; use one of them')
    return {net: [param for qualname, param in named
                  if qualname.startswith(net + '.') and qualname not in frozen_by]
            for net in networks}


def check_param_groups(groups, networks):
    """Each parameter belongs to one place: the core networks or a single plugin group."""
    where = {id(param): f'the core network {net}' for net, module in networks.items()
             for param in module.parameters()}
    for index, group in enumerate(groups):
        label = f"parameter group {group.name!r} ({owner_of(group, 'param_groups', index)})"
        params = list(group.module.parameters())
        if not params:
            raise ValueError(f'{label} has no parameters')
        for param in params:
            if id(param) in where:
                raise ConflictError(f'{label} holds a parameter of {where[id(param)]}; a '
                                    f'parameter may be trained by one owner only')
            where[id(param)] = label
