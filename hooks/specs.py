"""The hook specifications: the plugin author's contract, one function per injection point.

Every hook of docs/hooks.md §4 has the same name here. The host calls each hook **per plugin, in
`--plugin` order** (never as one pluggy broadcast), so it always knows whose contribution is whose;
the "Combine" line of each docstring says what happens when several plugins answer. A plugin may
accept a subset of a hook's arguments. Data classes named in the annotations come from
`stylegan2_ada.extensions` (Conditioning, FreezePolicy, ParamGroup, DHead, WTransform,
LatentBatch, Iteration, TickInfo, SnapshotInfo); `run` is the host's per-plugin RunContext view
(gda_core.run_context): `run.options` and `run.ns` are the calling plugin's own.

Exclusive points (conditioning, adv_loss, latent_sampler, select_branch, augment_p) may be provided
by one active plugin only: two providers are a ConflictError naming both, raised before any work.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from . import Option, hookspec

if TYPE_CHECKING:   # annotations only: gda_hooks imports nothing but pluggy at run time
    import click
    import torch
    from stylegan2_ada.extensions import (Conditioning, DHead, FreezePolicy, ParamGroup,
                                          SnapshotInfo, TickInfo, WTransform)

# ---- Declaration: before any network is loaded ----------------------------------------------------


@hookspec
def options() -> List[Option]:
    """The plugin's options, shown as `--<plugin>-<name>` in `gda train --help`.

    Called once when the plugin is loaded. Values given on the command line are converted and
    validated by `Option`; an option of a plugin that is not active, an unknown name or an
    ill-typed value is a usage error. Parsed values reach every other hook as `run.options`, and
    are saved in training_options.json and the snapshot. Combine: each plugin has its own namespace.
    """


@hookspec
def propose_defaults(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Defaults this plugin proposes for core options ({'batch': 4, 'lr': 0.002, 'gamma': 10}).

    Receives the plugin's parsed options. Precedence: explicit CLI value > proposal > --cfg preset.
    Combine: two plugins proposing different values for an option the user did not set is a
    conflict error; equal proposals agree.
    """


# ---- Construction: after G_s, G, D and the dataset exist; cheap, no data passes ---------------------


@hookspec
def conditioning(run) -> 'Optional[Conditioning]':
    """A conditioning input c for an unconditional source (DISP's C(x)); the engine then adds G's
    embedding (`add_conditioning`). Exclusive. Returns Conditioning(c_dim, real_c, gen_c, infer_c)
    or None. `infer_c(n, rng)` gives c in `gda generate`."""


@hookspec
def weight_reparam(run) -> 'Dict[str, torch.nn.Module]':
    """{'G.synthesis.b64.conv0': f}: the layer computes with f(W) instead of W (AdaFM).

    f keeps W's shape and is differentiable; it trains only if listed in param_groups, and G_ema's
    layer uses f's EMA twin. Combine: several on one layer compose in plugin order, f2(f1(W)).
    """


@hookspec
def freeze_policy(run) -> 'Optional[FreezePolicy]':
    """FreezePolicy(frozen(qualname) -> bool, requires=patterns) over core G/D parameters.

    Combine: frozen = the union of every policy (order-free); a `requires` entry that another
    policy freezes is a conflict naming both. The run prints trainable and frozen parameter counts
    per module at start.
    """


@hookspec
def param_groups(run) -> 'List[ParamGroup]':
    """Plugin modules that train: ParamGroup(name, module, network, lr, betas, lazy_reg, ema,
    start_iteration). Each becomes a group of its side's Adam; G-side groups with ema=True get an
    EMA twin used by G_ema. Combine: concatenated; a parameter in two groups, or a core parameter
    in a group, is an error."""


@hookspec
def d_heads(run) -> 'List[DHead]':
    """Heads on D's output and features: DHead(name, module, mode='replace'|'add', features,
    branches). module(logits, feats, c, it) -> Tensor. Combine: the 'replace' head active for
    `it.branch` gives the D output, then 'add' heads are summed in plugin order; two 'replace'
    heads on overlapping branches are a conflict."""


@hookspec
def adv_loss(run) -> Optional[Callable]:
    """The adversarial loss form fn(kind, logits) -> per-element loss, kind in 'G_fake',
    'D_real', 'D_fake' (DISP's hinge). Exclusive; the default is the non-saturating softplus."""


@hookspec
def w_transforms(run) -> 'List[WTransform]':
    """Transforms of ws between style mixing and synthesis: WTransform(name, module,
    target='adapted'|'both', modes={'train', 'generate'}), module(ws, it) -> ws.

    Combine: chained in plugin order. The source pipeline (`gda generate --pairs`, SCS) applies
    only the 'both' transforms, so paired images share the latent up to the first adapted one.
    """


@hookspec
def latent_sampler(run) -> Optional[Callable]:
    """fn(it, n) -> LatentBatch(z, mixing, c) | None, called once per phase with `it.phase` set;
    None means the core sampler (z ~ N(0, I) from it.rng, with mixing). Exclusive."""


@hookspec
def select_branch(run) -> Optional[Callable]:
    """fn(it) -> str | None at the start of each iteration; the result is `it.branch` for the
    whole iteration (D step, G step, R1). Exclusive; None is the core's image-level D."""


@hookspec
def augmentations(run) -> List[Callable]:
    """Differentiable fn(img, it) -> img, random per sample, applied to reals and fakes in every
    D pass. Combine: chained in plugin order, then the core AugmentPipe (DiffAugment before ADA)."""


@hookspec
def augment_p(run) -> Optional[Callable]:
    """fn(it) -> p, the AugmentPipe's probability each iteration (GenDA's ramp); the ADA
    controller is then off, and --aug must be ada. Exclusive."""


@hookspec
def g_loss_terms(run) -> List[Callable]:
    """fn(it) -> {name: weighted scalar tensor}, called once per iteration after the adversarial
    G rounds; terms draw their own samples from it.rng (through run.synthesize). Combine: all
    summed and backpropagated once; each is logged as Loss/G/<plugin>/<name> in stats.jsonl."""


# ---- Setup: fresh runs only --------------------------------------------------------------------------


@hookspec
def setup(run) -> None:
    """The expensive precomputation (Fisher, prior bank, inversion), once per fresh run in plugin
    order, after construction is applied (G_ema and anchors exist) and before the first iteration.
    Whatever it computes must come back through state_dict: resume and generate skip it."""


# ---- Lifecycle ---------------------------------------------------------------------------------------


@hookspec
def on_tick(run, info: 'TickInfo') -> Optional[Dict[str, float]]:
    """After each tick's stats are gathered, before a snapshot, on every process. Returned values
    are logged in stats.jsonl as <plugin>/<key>. Combine: every plugin is called in order."""


@hookspec
def state_dict(run) -> Dict[str, Any]:
    """The plugin's state at each snapshot: tensors and plain values only (the safe loader reads
    it), stored in snapshot['gda']['plugins'][i]['state']. Modules from param_groups, heads,
    transforms and reparams are saved by the host and need not be included."""


@hookspec
def load_state_dict(run, state: Dict[str, Any]) -> None:
    """Restore what state_dict returned, on resume and in `gda generate`/`gda export`, after
    construction and the host's own restore, before the first iteration or image."""


@hookspec
def on_snapshot(run, info: 'SnapshotInfo') -> None:
    """On rank 0 after a snapshot is atomically in place, for side artefacts only (nothing resume
    needs may live there). Combine: every plugin is called in order."""


# ---- Generation and export ---------------------------------------------------------------------------


@hookspec
def fold(run, G: 'torch.nn.Module') -> None:
    """Write the plugin's inference effect into the plain generator G (a copy of G_ema without
    plugin slots) for `gda export`, or raise gda_hooks.NotFoldable(reason). Called in plugin
    order; a plugin that changes inference (generate-mode transforms, reparams on G) and does not
    implement fold cannot be exported. It may return plain data that weights cannot hold (disp's
    prior bank): export writes it beside the generator, G.pt -> G.<plugin>.pt."""


# ---- Command line ------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: 'click.Group') -> None:
    """Add sub-commands to `gda` (cli.add_command), like llm and datasette. Called for every
    installed plugin; a name clashing with a core or another plugin's command is reported and
    skipped, and breaks no other command."""


HOOK_NAMES = [name for name, value in list(globals().items())
              if callable(value) and hasattr(value, 'gda_spec')]
