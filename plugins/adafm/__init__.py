"""adafm: AdaFM (Zhao, Cong, Carin, "On Leveraging Pretrained GANs for Generation with Limited
Data", ICML 2020), ported from the paper's GP-GAN ResNet to our StyleGAN2 core.

The "general part" (G's layers near the image, D's layers near the image) is transferred and
frozen; the "specific part" (G's low-resolution blocks and mapping network, the rest of D) trains.
By default G's specific part is new and randomly initialised, as the official code builds it
(`--adafm-specific fresh`); `--adafm-specific source` fine-tunes the source's layers instead. The frozen G convolutions are adapted by adaptive filter modulation, W' = gamma * W +
beta with gamma, beta in R^{Cout x Cin} broadcast over the kernel (slides eq. 1), identity-initialised.
On StyleGAN2 the modulation acts on the stored base weight, before the style modulation and
demodulation, through the engine's weight-reparametrisation slot; `gda export` folds it into plain
weights. Defaults follow the slides' best transfer, G4D2: at 128 px the blocks at 32 px and above
(the three highest) are frozen in G, and D's first convolution and block.
"""

from gda_hooks import hookimpl, non_negative, Option, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import FreezePolicy, ParamGroup

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


@hookimpl
def options():
    return [
        Option('g_res', int, None, 'Freeze G synthesis blocks at and above this resolution and '
                                   'modulate their convolutions [default: resolution/4, the '
                                   "slides' G4]", validate=positive),
        Option('d_layers', int, 4, "Freeze D's first N layers (NVIDIA counting; 4 = the "
                                   "highest-resolution block, the slides' D2)",
               validate=non_negative),
        Option('specific', str, 'fresh', "G's specific part (mapping, blocks below --adafm-g-res): "
                                          "'fresh' = new, randomly initialised, as the official code; "
                                          "'source' = the source's layers, fine-tuned",
               choices=('fresh', 'source')),
        Option('torgb', bool, False, 'Also modulate the frozen toRGB layers (the paper leaves the '
                                     'output convolution plainly frozen)'),
        Option('delay', int, 0, 'Train gamma/beta from this iteration on (official code: 10000)',
               validate=non_negative),
        Option('lr', float, None, 'Learning rate of gamma/beta [default: the core --lr]',
               validate=positive),
    ]


def _general_part(run):
    """The frozen G blocks, the modulated layers and their modulations, made once per run."""
    import torch
    from .modulation import FilterModulation, slot_name
    ns = run.ns
    if hasattr(ns, 'modulations'):
        return ns
    synthesis = run.G.synthesis
    resolutions = list(synthesis.block_resolutions)
    threshold = run.options['g_res'] or max(run.G.img_resolution // 4, 4)
    if threshold not in resolutions:
        raise UserError(f'--adafm-g-res {threshold}: give one of the synthesis resolutions '
                        f'{", ".join(map(str, resolutions))}')
    ns.threshold = threshold
    ns.frozen_blocks = [res for res in resolutions if res >= threshold]
    names = ('conv0', 'conv1') + (('torgb',) if run.options['torgb'] else ())
    ns.paths = [f'G.synthesis.b{res}.{name}' for res in ns.frozen_blocks for name in names
                if hasattr(getattr(synthesis, f'b{res}'), name)]
    ns.modulations = torch.nn.ModuleDict({
        slot_name(path): FilterModulation(*run.G.get_submodule(path[2:]).weight.shape[:2])
        for path in ns.paths})
    return ns


@hookimpl
def weight_reparam(run):
    from .modulation import slot_name
    ns = _general_part(run)
    return {path: ns.modulations[slot_name(path)] for path in ns.paths}


@hookimpl
def freeze_policy(run):
    if run.mode == 'generate':
        return None   # nothing trains; D may not even be there
    if run.G_s is None:
        raise UserError('adafm transfers the general part of a pretrained GAN, so it needs a '
                        'source; give --source PATH|URL|PRESET instead of --source none')
    ns = _general_part(run)
    prefixes = [f'G.synthesis.b{res}.' for res in ns.frozen_blocks]
    count = run.options['d_layers']
    order = run.D.layer_order()
    if count > len(order):
        raise UserError(f'--adafm-d-layers {count}: this D has {len(order)} layers '
                        f'({order[0]} ... {order[-1]})')
    prefixes += [f'D.{path}.' for path in order[:count]]
    prefixes = tuple(prefixes)
    return FreezePolicy(frozen=lambda qualname: qualname.startswith(prefixes))


@hookimpl
def param_groups(run):
    ns = _general_part(run)
    return [ParamGroup('modulation', ns.modulations, network='G', lr=run.options['lr'],
                       ema=True, start_iteration=run.options['delay'])]


@hookimpl
def setup(run):
    """Fresh runs only: the specific part starts from new random values (resume keeps them)."""
    from .specific import fresh_seed, reinitialise, specific_prefixes
    if run.options['specific'] != 'fresh':
        return
    ns = _general_part(run)
    try:
        reinitialise([run.G, run.G_ema], specific_prefixes(run.G, ns.threshold),
                     fresh_seed(run.seed))
    except ValueError as error:
        raise UserError(f'{error}; use --adafm-specific source with this plugin combination') \
            from None


@hookimpl
def fold(run, G):
    from .modulation import fold_into, slot_name
    ns = _general_part(run)
    for path in ns.paths:
        fold_into(G.get_submodule(path[2:]), ns.modulations[slot_name(path)])
