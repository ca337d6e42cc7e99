"""idc: cross-domain distance consistency, the generator half of CDC (Ojha, Li, Lu, Efros, Lee,
Shechtman, Zhang, "Few-shot Image Generation via Cross-domain Correspondence", CVPR 2021, §3.1).

Every iteration a separate batch of z (default 4, no style mixing) goes through the frozen source
generator and the adapted one. For each sample i a layer is drawn uniformly among all synthesis
layers but the first (b4.conv1); the cosine similarities of i's flattened fp32 features to every
other sample's, softmaxed over those N-1 others, must stay the same after adaptation:
L = weight * KL(p_source || p_target), averaged over the N*(N-1) entries (the official code's
KLDivLoss; the paper writes the other order, offered as --idc-direction paper). The official code
renders the two passes with independent random noise; --idc-noise const uses the fixed noise maps.
The paper's full method adds the patch discriminator and anchors: --plugin idc --plugin patchd.
"""

from gda_hooks import Option, hookimpl, positive

from .choices import AUTO, DIRECTIONS

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


# CDC's 256-px training setting (official code and paper), proposed as core defaults.
CDC_DEFAULTS = {'batch': 4, 'lr': 0.002, 'gamma': 10.0}


def _at_least_two(value):
    if value < 2:
        raise ValueError(f'needs at least 2 samples (each is compared with the others), '
                         f'got {value}')


def _layer_list(value):
    tokens = [token.strip() for token in value.split(',')]
    if not all(tokens):
        raise ValueError(f'give {AUTO!r} or comma-separated layer names/indices, got {value!r}')
    return value if value == AUTO else ','.join(tokens)


@hookimpl
def options():
    return [
        Option('weight', float, 1000.0, 'Weight of the distance-consistency loss (CDC: 1000)',
               validate=positive),
        Option('batch', int, 4, 'Samples rendered per iteration for the loss (CDC: 4)',
               validate=_at_least_two),
        Option('layers', str, AUTO, "Candidate synthesis layers, one drawn per sample: 'auto' = all "
                                    "but b4.conv1, or names/indices like b8.conv0,b16.conv1",
               validate=_layer_list),
        Option('noise', str, 'random', 'Noise inputs of the two passes: random (official: '
                                       'independent draws) or const', choices=('random', 'const')),
        Option('direction', str, 'official', 'official: KL(p_source||p_target) as the released '
                                             'code; paper: KL(p_target||p_source) as eq. 3',
               choices=DIRECTIONS),
    ]


@hookimpl
def propose_defaults():
    return dict(CDC_DEFAULTS)


@hookimpl
def g_loss_terms(run):
    from .term import DistanceConsistencyTerm
    if run.mode == 'generate':
        return []   # a training loss only; gda generate and export need nothing from it
    return [DistanceConsistencyTerm(run)]
