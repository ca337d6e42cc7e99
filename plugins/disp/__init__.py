"""disp: Data InStance Prior (Mangla, Kumari, Singh, Krishnamurthy, Balasubramanian, "Data InStance
Prior (DISP) in Generative Adversarial Networks", WACV 2022). No official code exists; the slides
are the spec.

A pre-trained extractor C gives C(x) for every target image (default: NVIDIA's vgg16.pt fc7
features, DISP-Vgg16; any TorchScript extractor by path). G is conditioned on it, G(z | C(x)), as
NVIDIA's conditional mapping conditions on a label: an embedding at normal learning rate
(`mapping.embed`), normalised, joined to z before fc0. fc0's columns for the embedding start at
zero (the adapted G starts as the source) and move at normal learning rate through a trainable
offset (steering.py), so the prior steers G from the first step. D becomes a projection discriminator
D(x, y) = D_emb(y) . D_f(x) + D_I(D_f(x)) with the source's output layer as D_I and a new,
zero-initialised D_emb. Both are trained with the slides' hinge losses. The prior bank is saved
in the snapshot; `gda generate` conditions on mixups of bank entries (few-shot) or on draws from a
Gaussian mixture fitted to the bank (`--disp-infer gmm`).
"""

from gda_hooks import hookimpl, Option, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import Conditioning, DHead, FreezePolicy, ParamGroup

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


FC0 = 'G.mapping.fc0'

REQUIRED = ('G.mapping.embed.*', 'G.mapping.fc0.weight')   # the conditioning must be able to learn


@hookimpl
def options():
    return [Option('extractor', str, 'vgg16', 'Prior extractor C: vgg16 (NVIDIA vgg16.pt, fc7 '
                                              'features) or a TorchScript file'),
            Option('infer', str, 'mixup', 'Priors at generation: mixup of bank entries '
                                          '(few-shot) or a GMM fitted to the bank',
                   choices=('mixup', 'gmm')),
            Option('gmm_components', int, 5, 'Components of the GMM (at most one per image)',
                   validate=positive)]


def _c_dim(run):
    """The prior's width. A network already conditioned by disp (resume, generate) says it; a
    fresh run asks the extractor, loading it now so that a missing file stops the run before any
    work."""
    from .prior import feature_dim
    if run.mode != 'train' and run.G.c_dim > 0:
        return run.G.c_dim
    if run.mode == 'generate':
        raise UserError('this network is not conditioned, so it was not trained with disp')
    if getattr(run.ns, 'extractor', None) is None:
        run.ns.extractor = run.detector(run.options['extractor'])
        run.ns.c_dim = feature_dim(run.ns.extractor, run.dataset.num_channels,
                                   run.dataset.resolution, run.device)
    return run.ns.c_dim


def _bank(run):
    bank = getattr(run.ns, 'bank', None)
    if bank is None:
        raise UserError('disp has no prior bank: the run skipped setup and the snapshot holds '
                        'no disp state')
    return bank


@hookimpl
def conditioning(run):
    from .prior import mixup, sample_gmm
    def centred(c):
        mean, scale = run.ns.centre
        return (c - mean.to(c.device)) / scale.to(c.device)

    def real_c(raw_idx):
        bank = _bank(run)
        return centred(bank[raw_idx.to(bank.device)])

    def infer_c(n, rng):
        if run.options['infer'] == 'gmm':
            return centred(sample_gmm(run.ns.gmm, n, rng, _bank(run).device))
        return centred(mixup(_bank(run), n, rng))

    # gen_c None: the fakes' priors are bank entries of uniformly drawn images (x ~ q(x)).
    return Conditioning(_c_dim(run), real_c=real_c, infer_c=infer_c)


@hookimpl
def freeze_policy(run):
    if run.mode == 'generate':
        return None
    return FreezePolicy(frozen=lambda qualname: False, requires=REQUIRED)


def _head(run):
    from .projection import ProjectionHead
    if getattr(run.ns, 'head', None) is None:
        run.ns.head = ProjectionHead(_c_dim(run), run.D.b4.fc.out_features)
    return run.ns.head


@hookimpl
def d_heads(run):
    from .projection import FEATURE
    if run.mode == 'generate':
        return []   # D plays no part in generation
    return [DHead('projection', _head(run), mode='add', features=(FEATURE,))]


def _columns(run):
    from .steering import for_mapping
    if getattr(run.ns, 'columns', None) is None:
        run.ns.columns = for_mapping(run.G.mapping)
    return run.ns.columns


@hookimpl
def weight_reparam(run):
    return {FC0: _columns(run)}


@hookimpl
def param_groups(run):
    groups = [ParamGroup('prior_columns', _columns(run), network='G', ema=True)]
    if run.mode == 'generate':
        return groups   # the columns' EMA twin renders; D plays no part
    return groups + [ParamGroup('projection', _head(run), network='D')]


@hookimpl
def adv_loss(run):
    from .projection import hinge_loss
    return hinge_loss


@hookimpl
def setup(run):
    """The prior bank C(x_j) of every raw (unflipped) target image, and the GMM if asked for."""
    import numpy as np
    from .prior import centring, extract, fit_gmm
    images = np.stack([run.dataset.raw_image(i) for i in range(len(run.dataset))])
    run.ns.bank = extract(run.ns.extractor, images, run.device)
    run.ns.centre = centring(run.ns.bank)
    run.ns.gmm = (fit_gmm(run.ns.bank, run.options['gmm_components'], seed=run.seed)
                  if run.options['infer'] == 'gmm' else None)


@hookimpl
def state_dict(run):
    return dict(bank=_bank(run).detach().cpu(), extractor=run.options['extractor'],
                gmm=None if run.ns.gmm is None else dict(run.ns.gmm))


@hookimpl
def load_state_dict(run, state):
    import torch
    from .prior import centring, fit_gmm
    bank = torch.as_tensor(state['bank'], dtype=torch.float32)
    if bank.ndim != 2 or bank.shape[1] != run.G.c_dim:
        raise UserError(f'the saved disp prior bank has shape {list(bank.shape)}, but G is '
                        f'conditioned on {run.G.c_dim} values')
    run.ns.bank = bank.to(run.device)
    run.ns.centre = centring(run.ns.bank)
    gmm = state.get('gmm')
    run.ns.gmm = None if gmm is None else {key: torch.as_tensor(value) for key, value in gmm.items()}
    if run.options['infer'] == 'gmm' and run.ns.gmm is None:
        run.ns.gmm = fit_gmm(run.ns.bank, run.options['gmm_components'], seed=run.seed)


@hookimpl
def fold(run, G):
    """The prior columns' offset goes into fc0 (NVIDIA's plain conditional generator); what G
    cannot hold is the prior bank (and the GMM), which export writes beside it."""
    from .steering import fold_centring, fold_into
    fold_into(G.mapping.fc0, _columns(run))
    fold_centring(G.mapping.embed, *run.ns.centre)
    return dict(prior_bank=_bank(run).detach().cpu(), infer=run.options['infer'],
                gmm=None if run.ns.gmm is None else dict(run.ns.gmm))
