"""The training loop's injection points: plain callables the loop and the loss call.

The engine knows nothing about plugins. The host (gda_core) fills an `Extensions` from the plugins'
hooks; an empty `Extensions` is NVIDIA's StyleGAN2-ADA. docs/hooks.md maps every few-shot method
onto these points. Contributions combine as documented on each field: lists run in order, and
`None` means "the core's default".
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional

import torch

TARGETS = ('adapted', 'both')


@dataclasses.dataclass
class Iteration:
    """What every callable learns about the current iteration.

    `branch` is shared by the D step, the G step and R1 of one iteration (CDC's image/patch
    switch); `mixing` turns style mixing off for the iteration (CDC's anchor iterations);
    `scratch` is per-iteration space for plugins (cleared each iteration).
    """
    index: int            # iterations done before this one (0-based)
    cur_nimg: int         # images shown before this iteration (all processes)
    batch_size: int       # global batch
    device: torch.device
    branch: Optional[str] = None
    mixing: bool = True
    scratch: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class WTransform:
    """A change of w after mapping: `fn(ws, it) -> ws`; `target` says which generators it applies
    to: 'adapted' (the trained G only, e.g. GenDA's adaptor) or 'both' (the frozen source G too,
    e.g. RSSA's latent compression), so paired source/adapted samples stay comparable."""
    fn: Callable
    target: str = 'adapted'

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f'WTransform target must be one of {TARGETS}, got {self.target!r}')


@dataclasses.dataclass
class LossTerm:
    """An extra loss: `fn(it, gen) -> scalar tensor` (already weighted), logged as Loss/<name>.

    `gen` is a dict with z, c, ws, img (the adapted G's batch for this phase), features (G feature
    maps requested through `g_features`), logits and d_features (D on that batch)."""
    name: str
    fn: Callable
    phase: str = 'G'      # 'G': added in Gmain; 'D': added in Dmain with the real and fake batch


@dataclasses.dataclass
class ParamGroup:
    """New trainable parameters (heads, adaptors, modulations) and how they train.

    `network` 'G' or 'D' chooses the optimiser and the phases; lr_multiplier scales the lr; the
    lazy-regularisation ratio applies to them as to the network's own parameters."""
    name: str
    params: List[torch.nn.Parameter]
    network: str = 'G'
    lr_multiplier: float = 1.0


@dataclasses.dataclass
class Extensions:
    # Per iteration, before anything else: fn(it). Sets it.branch / it.mixing / it.scratch.
    begin_iteration: List[Callable] = dataclasses.field(default_factory=list)
    # z for a phase: fn(it, batch_size, phase) -> z or None; the first non-None wins.
    sample_z: List[Callable] = dataclasses.field(default_factory=list)
    # w changes after mapping and style mixing, in order.
    w_transforms: List[WTransform] = dataclasses.field(default_factory=list)
    # G feature names to compute in every G pass of the loss (union over plugins).
    g_features: List[str] = dataclasses.field(default_factory=list)
    # D feature names to compute in every D pass (union), handed to d_heads and loss terms.
    d_features: List[str] = dataclasses.field(default_factory=list)
    # Augmentations of D inputs after the ADA pipe, chained: fn(img, it) -> img.
    augment: List[Callable] = dataclasses.field(default_factory=list)
    # Heads on D, chained: fn(it, logits, d_features, img, c) -> logits (may change the shape,
    # e.g. patch logits [N, 1, h, w]; losses average per image).
    d_heads: List[Callable] = dataclasses.field(default_factory=list)
    # The adversarial loss form (exclusive): fn(kind, logits) -> per-element loss with kind in
    # 'G_fake', 'D_real', 'D_fake'. None: non-saturating softplus.
    adv_loss: Optional[Callable] = None
    # Augmentation probability owner (exclusive): fn(it) -> p. When set, ADA's controller is off.
    augment_p: Optional[Callable] = None
    # Extra loss terms, each logged separately.
    loss_terms: List[LossTerm] = dataclasses.field(default_factory=list)
    # Freezing policies: fn(network, name, param) -> False to freeze. A parameter trains only if
    # every policy allows it (frozen sets unite: freezing is never undone by another plugin).
    trainable: List[Callable] = dataclasses.field(default_factory=list)
    # New parameters and their optimiser settings.
    param_groups: List[ParamGroup] = dataclasses.field(default_factory=list)
    # Lifecycle: fn(tick_info) after each tick; state(): plain data for the snapshot.
    on_tick: List[Callable] = dataclasses.field(default_factory=list)

    def begin(self, it):
        it.scratch.clear()
        for fn in self.begin_iteration:
            fn(it)

    def z(self, it, batch_size, phase, z_dim, device, generator=None):
        for fn in self.sample_z:
            z = fn(it, batch_size, phase)
            if z is not None:
                return z
        return torch.randn([batch_size, z_dim], device=device, generator=generator)

    def transform_ws(self, ws, it, source=False):
        """Apply the w transforms meant for the adapted G, or for the source G (target 'both')."""
        for transform in self.w_transforms:
            if not source or transform.target == 'both':
                ws = transform.fn(ws, it)
        return ws

    def augment_images(self, img, it):
        for fn in self.augment:
            img = fn(img, it)
        return img

    def heads(self, it, logits, d_features, img, c):
        for fn in self.d_heads:
            logits = fn(it, logits, d_features, img, c)
        return logits

    def is_trainable(self, network, name, param):
        return all(policy(network, name, param) is not False for policy in self.trainable)
