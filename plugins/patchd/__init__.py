"""patchd: anchor regions and a patch-level discriminator, the discriminator half of CDC (Ojha,
Li, Lu, Efros, Lee, Shechtman, Zhang, "Few-shot Image Generation via Cross-domain Correspondence",
CVPR 2021, §3.2 "relaxed realism").

n anchor latents (default: one per target image, CDC's n_train) are drawn once and kept in every
snapshot. Every subspace_freq-th iteration (default 4) the D step and the G step sample
z = anchor + N(0, 0.1^2) without style mixing and play against the full image-level D; all other
iterations use ordinary z and a patch-level D: D's trunk up to an intermediate map (the official
32x32 map at 256 px: the output of block b64; resolution/8, at least 8x8, elsewhere) and a new
3x3 conv head giving one logit per patch. Real images follow the same branch as the fakes; R1
uses the patch logits averaged per image. With idc this is the paper's method:
`gda train --plugin idc --plugin patchd`.
"""

from gda_hooks import Option, hookimpl, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import DHead, ParamGroup

from .choices import AUTO
from .schedule import PATCH, AnchorSampler, BranchSchedule

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


CDC_DEFAULTS = {'batch': 4, 'lr': 0.002, 'gamma': 10.0}


def _at_least_one(value):
    if value < 1:
        raise ValueError(f'must be 1 or more, got {value}')


def _block_name(value):
    if value != AUTO and not (value.startswith('b') and value[1:].isdigit()):
        raise ValueError(f"give 'auto' or a D block name such as b64, got {value!r}")


@hookimpl
def options():
    return [
        Option('anchors', int, None, 'Number of anchor latents [default: the number of target '
                                     'images, CDC n_train]', validate=_at_least_one),
        Option('subspace-freq', int, 4, 'Every N-th iteration uses anchor latents and the '
                                        'image-level D (CDC: 4; its released script: 2)',
               validate=_at_least_one),
        Option('subspace-std', float, 0.1, 'Std of the Gaussian around each anchor (CDC: 0.1)',
               validate=positive),
        Option('block', str, AUTO, "D block whose output the patch head reads: 'auto' = the "
                                   "resolution/8 map, at least 8x8 (b64 at 256 px)",
               validate=_block_name),
        Option('highp', int, 1, 'Draw the map per D pass among this many block outputs from '
                                '--patchd-block on (CDC highp; 1 = always that one)',
               validate=_at_least_one),
    ]


@hookimpl
def propose_defaults():
    return dict(CDC_DEFAULTS)


def _head(run):
    """The patch head, built once per run and shared by d_heads and param_groups."""
    from .head import PatchHead, block_channels, candidate_blocks
    if getattr(run.ns, 'head', None) is None:
        if run.D is None:
            raise UserError('this snapshot holds no discriminator, which the patch head sits on')
        blocks = candidate_blocks(run.D, run.options['block'], run.options['highp'])
        run.ns.head = PatchHead(blocks, {name: block_channels(run.D, name) for name in blocks})
    return run.ns.head


@hookimpl
def d_heads(run):
    head = _head(run)
    return [DHead('patch', head, mode='replace', features=tuple(head.blocks),
                  branches=frozenset({PATCH}))]


@hookimpl
def param_groups(run):
    # Trains with D at the core lr, lazily scaled like D (official e_optim = d_optim's settings).
    return [ParamGroup('head', _head(run), network='D')]


@hookimpl
def latent_sampler(run):
    run.request_anchors(run.options['anchors'])
    if run.options['anchors'] is None and run.dataset is not None:
        run.effective('anchors', len(run.dataset))   # CDC's n_train
    return AnchorSampler(run, run.options['subspace_std'])


@hookimpl
def select_branch(run):
    return BranchSchedule(run.options['subspace_freq'])


@hookimpl
def state_dict(run):
    """The anchors this run trains with (the host keeps a copy too; resume restores them here)."""
    anchors = run.anchor_state()
    return {} if anchors is None else {'anchors': anchors}


@hookimpl
def load_state_dict(run, state):
    anchors = state.get('anchors')
    if anchors is None:
        return
    expected = run.options['anchors']
    if expected is not None and len(anchors) != expected:
        raise UserError(f'the snapshot holds {len(anchors)} anchors but --patchd-anchors is '
                        f'{expected}; resume with the options the run started with')
    run.restore_anchors(anchors)
