"""genda: one-shot generative domain adaptation (Yang, Shen, Zhang, Xu, Zhu, Wu, Zhou, "One-Shot
Generative Domain Adaptation", arXiv 2111.09876; no official code exists, so the paper is the spec).

G and D stay frozen except for two lightweight modules and G's last ToRGB layer:
- the attribute adaptor w' = a * w + b per W+ entry (identity at init), on the adapted G only;
- the attribute classifier, a linear head on the frozen D backbone's features, replacing D's
  real/fake head.
Training truncates the latents towards the source's w_avg (psi 0.7, training only), ramps the
StyleGAN2-ADA augmentation probability linearly from 0 to 0.6 (the ADA controller is off) and
stops after a fixed number of real images. The paper's learning rates and that number were lost

from our copy of the text: the defaults here come from a sweep (benchmarks/genda_sweep.py).

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


Composes with diffaugment (`--plugin genda --plugin diffaugment`: DiffAugment runs before the ADA
pipe). The adaptor folds into the affine layers, so `gda export` writes a plain generator.
"""

from gda_hooks import hookimpl, Option, positive, probability
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import DHead, FreezePolicy, ParamGroup, WTransform


# Chosen by the sweep in benchmarks/genda_sweep.py (results/genda_sweep.md): the classifier must
# learn ~100x faster than the adaptor, and KID gains flatten after 2 kimg while diversity drops.
ADAPTOR_LR = 0.002     # proposed as the core --lr: the adaptor and the last ToRGB train with it
CLASSIFIER_LR = 0.2
STOP_KIMG = 2.0        # real images shown to D before stopping, in thousands (proposed --kimg)


def _psi(value):
    if not 0 < value <= 1:
        raise ValueError(f'must lie in (0, 1], got {value} (the paper found < 0.5 diverges)')


@hookimpl
def options():
    return [
        Option('psi', float, 0.7, 'Truncation psi during training (diversity constraint; 1 = '
               'off); generation is never truncated by genda', validate=_psi),
        Option('classifier-lr', float, CLASSIFIER_LR, 'Learning rate of the attribute classifier '
               '(the adaptor and the last ToRGB use --lr)', validate=positive),
        Option('aug-max', float, 0.6, 'Augmentation probability reached at the end of the ramp',
               validate=probability),
        Option('ramp-kimg', float, None, 'Length of the 0 -> aug-max ramp in kimg (default: the '
               'whole run)', validate=positive),
    ]


@hookimpl
def propose_defaults():
    return {'lr': ADAPTOR_LR, 'kimg': STOP_KIMG}


def _modules(run):
    """The adaptor, truncation and classifier of this run, built once."""
    from .adaptor import AttributeAdaptor, Truncation
    from .classifier import AttributeClassifier
    ns = run.ns
    if not hasattr(ns, 'adaptor'):
        if run.mode != 'generate' and run.G_s is None:
            raise UserError('genda adapts a pre-trained generator; give --source')
        ns.adaptor = AttributeAdaptor(run.G.num_ws, run.G.w_dim)
        ns.truncation = Truncation(run.G.mapping.w_avg, run.options['psi'])
        ns.classifier = AttributeClassifier(run.D.b4.fc.out_features) if run.D is not None else None
    return ns


def last_torgb(G):
    return f'G.synthesis.b{G.img_resolution}.torgb'


@hookimpl
def freeze_policy(run):
    keep = last_torgb(run.G) + '.'
    return FreezePolicy(frozen=lambda name: name.startswith('D.') or
                        (name.startswith('G.') and not name.startswith(keep)),
                        requires=[keep + '*'])


@hookimpl
def param_groups(run):
    ns = _modules(run)
    groups = [ParamGroup('adaptor', ns.adaptor, network='G')]
    if ns.classifier is not None:
        groups.append(ParamGroup('classifier', ns.classifier, network='D',
                                 lr=run.options['classifier_lr']))
    return groups


@hookimpl
def d_heads(run):
    from .classifier import FEATURE
    ns = _modules(run)
    if ns.classifier is None:
        return []
    return [DHead('classifier', ns.classifier, mode='replace', features=(FEATURE,))]


@hookimpl
def w_transforms(run):
    ns = _modules(run)
    transforms = []
    if run.options['psi'] != 1:
        transforms.append(WTransform('truncation', ns.truncation, target='adapted',
                                     modes={'train'}))
    transforms.append(WTransform('adaptor', ns.adaptor, target='adapted'))
    return transforms


def ramp_nimg(run):
    """Images over which p ramps: --genda-ramp-kimg, else the run's length (--kimg / --iters)."""
    if run.options['ramp_kimg'] is not None:
        return run.options['ramp_kimg'] * 1000
    core = run.core
    lengths = []
    if core.get('kimg') is not None:
        lengths.append(core['kimg'] * 1000)
    if core.get('iters') is not None:
        lengths.append(core['iters'] * core['batch'])
    return min(lengths) if lengths else None


@hookimpl
def augment_p(run):
    peak = run.options['aug_max']
    total = ramp_nimg(run)

    def probability(it):
        return peak * min(1.0, it.cur_nimg / total) if total else peak
    return probability


@hookimpl
def fold(run, G):
    from .adaptor import fold_adaptor
    adaptor = _modules(run).adaptor
    fold_adaptor(G, adaptor.a.detach(), adaptor.b.detach())
