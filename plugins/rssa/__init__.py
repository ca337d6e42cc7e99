"""rssa: relaxed spatial structural alignment (Xiao, Li, Wang, Zha, Huang, "Few Shot Generative
Model Adaption via Relaxed Spatial Structural Alignment", CVPR 2022; code StevenShaw1999/RSSA).

Two G loss terms align the spatial structure of G_t's feature maps with G_s's for the same latents:
self-correlation consistency (SCC, eq. 3-4) and disturbance correlation consistency (DCC, eq. 5-6,
on a neighbourhood of radius r around a latent). Latent space compression (eq. 8) projects every
W+ entry towards the span of the target images' inverted codes, for G_s and G_t alike, in training
and at generation. The paper's D objective is CDC's image + patch loss: that is
`--plugin rssa --plugin patchd`; rssa alone trains against the core D.

Paper by default, official code as an option (`--rssa-preset official`): loss weights 1/1 vs
0.8/0.4, DCC every iteration vs every 6, and the official layer choice (SCC on 64..256 px maps
only, normalised before pooling; DCC up to the first 128 px map). Both use smooth-L1 for SCC and
L1 for DCC. DCC uses the sampled neighbours (the official code draws them and then uses
independent z, a bug).
"""

import sys

import click

from gda_hooks import hookimpl, non_negative, NotFoldable, Option, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import WTransform

from .command import invert

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


PRESETS = {   # scc weight, dcc weight, dcc every, official layer choice
    'paper': (1.0, 1.0, 1, False),
    'official': (0.8, 0.4, 6, True),   # train_face_proj.py / train_church_proj.py
}


def _odd(value):
    if value < 1 or value % 2 == 0:
        raise ValueError(f'must be a positive odd number (the window is centred), got {value}')


def _check_alphas(text):
    """'paper', 'church', 'none', or comma-separated strengths in [0, 1], one per W+ entry."""
    text = text.strip().lower()
    if text in ('paper', 'church', 'none'):
        return text
    try:
        values = [float(part) for part in text.split(',')]
    except ValueError:
        raise ValueError(f"expected 'paper', 'church', 'none' or comma-separated numbers, got "
                         f"{text!r}") from None
    if not all(0 <= value <= 1 for value in values):
        raise ValueError(f'each strength must lie in [0, 1], got {text}')
    return ','.join(f'{value:g}' for value in values)


@hookimpl
def options():
    return [
        Option('preset', str, 'paper', "Loss weights, DCC period and layers: 'paper' (1, 1, "
               "every iteration, every map) or 'official' (0.8, 0.4, every 6, SCC on 64..256 px "
               "maps, DCC up to 128 px)",
               choices=tuple(PRESETS)),
        Option('scc-weight', float, None, 'Weight of SCC (default: from --rssa-preset; 0 = off)',
               validate=non_negative),
        Option('dcc-weight', float, None, 'Weight of DCC (default: from --rssa-preset; 0 = off)',
               validate=non_negative),
        Option('dcc-every', int, None, 'Compute DCC every N iterations (default: from '
               '--rssa-preset)', validate=positive),
        Option('batch', int, 4, 'Latents per iteration for SCC', validate=positive),
        Option('neighbours', int, 3, 'DCC: neighbours N sampled around each centre (N+1 samples)',
               validate=positive),
        Option('radius', float, 0.2, 'DCC: neighbourhood radius r, in units of sqrt(z_dim) '
               '(the typical length of z)', validate=positive),
        Option('window', int, 7, 'DCC: width delta of the correlation window (odd)',
               validate=_odd),
        Option('dcc-center', str, 'random', "DCC neighbourhood centres: 'random' z ~ N(0, I) (the "
               "paper) or the run's shared latent 'anchors' (those patchd uses)",
               choices=('random', 'anchors')),
        Option('alphas', str, 'paper', "Compression strength per W+ entry: 'paper' (the "
               "official face values, by relative depth), 'church' (the official church values), "
               "'none' (no compression, no inversion) or a list",
               validate=_check_alphas),
        Option('codes', str, None, 'W+ codes from `gda invert` (default: invert the targets at '
               'the start of training)'),
        Option('invert-steps', int, 1000, 'Adam steps per image when inverting at the start',
               validate=positive),
        Option('lpips', str, 'auto', "LPIPS (VGG16) in the inversion: 'auto' (MSE only, with a "
               "warning, if VGG16 is unavailable), 'on' (required) or 'off'",
               choices=('auto', 'on', 'off')),
    ]


@hookimpl
def propose_defaults():
    return {'batch': 4, 'lr': 0.002, 'gamma': 10}   # CDC's code base, which RSSA's builds on


@hookimpl
def register_commands(cli):
    cli.add_command(invert)


# ---- construction ---------------------------------------------------------------------------------


def settings(options):
    """The effective weights, DCC period and layer choice: explicit options over the preset."""
    scc, dcc, every, official = PRESETS[options['preset']]
    return dict(scc=scc if options['scc_weight'] is None else options['scc_weight'],
                dcc=dcc if options['dcc_weight'] is None else options['dcc_weight'],
                every=every if options['dcc_every'] is None else options['dcc_every'],
                official=official)


def alphas_for(options, num_ws):
    """The per-entry strengths, or None when compression is off."""
    from .compression import paper_alphas
    text = options['alphas']
    if text == 'none':
        return None
    if text in ('paper', 'church'):
        return paper_alphas(num_ws, text)
    values = [float(part) for part in text.split(',')]
    if len(values) != num_ws:
        raise UserError(f'--rssa-alphas gives {len(values)} strengths, but this generator has '
                        f'{num_ws} W+ entries; give {num_ws} (or use paper)')
    return values if any(values) else None


def _compression(run):
    """The run's LatentCompression (built once per run), or None when compression is off."""
    from .compression import LatentCompression
    if not hasattr(run.ns, 'compression'):
        alphas = alphas_for(run.options, run.G.num_ws)
        run.ns.compression = LatentCompression(alphas) if alphas is not None else None
    return run.ns.compression


@hookimpl
def w_transforms(run):
    from . import inversion
    if run.mode != 'generate' and run.G_s is None:
        raise UserError('rssa aligns the adapted generator with its source; give --source')
    if run.options['dcc_center'] == 'anchors':
        run.request_anchors()
    compression = _compression(run)
    if compression is None:
        if run.options['codes'] is not None:
            raise UserError('--rssa-codes given with --rssa-alphas none: without compression the '
                            'codes are unused; drop one of them')
        return []
    if run.mode == 'train' and run.options['codes'] is not None:   # fresh runs only: resume and
        G_s = run.G_s                                              # generate use the snapshot's
        compression.set_codes(inversion.load_codes(run.options['codes'], G_s.num_ws, G_s.w_dim))
    return [WTransform('compression', compression, target='both')]


@hookimpl
def g_loss_terms(run):
    import torch
    from . import correlation
    chosen = settings(run.options)
    options = run.options
    names = run.G.synthesis.layer_names
    sizes = [int(name.split('.')[0][1:]) for name in names]   # 'b64.conv0' -> 64
    scc_names = [names[i] for i in correlation.scc_layers(sizes, chosen['official'])]
    dcc_names = [names[i] for i in correlation.dcc_layers(sizes, chosen['official'])]
    if chosen['scc'] > 0 and not scc_names:
        click.echo(f'Warning: rssa: the official SCC uses maps of 64 to 256 px only; this '
                   f'generator\'s are {min(sizes)} to {max(sizes)} px, so SCC is off', err=True)

    def features(z, it, layers):
        """Both generators' maps for the same latents (compressed alike) and constant noise,
        as the official code renders them."""
        c = run.gen_c(len(z), it)
        source = run.synthesize('source', z, c, noise_mode='const', features=layers).features
        target = run.synthesize('G', z, c, noise_mode='const', features=layers).features
        return [source[name] for name in layers], [target[name] for name in layers]

    def center(it):
        if options['dcc_center'] == 'anchors':
            anchors = run.anchors.cpu()
            return anchors[int(torch.randint(len(anchors), [1], generator=it.rng))]
        return torch.randn([run.G.z_dim], generator=it.rng)

    def terms(it):
        result = {}
        if chosen['scc'] > 0 and scc_names:
            z = torch.randn([options['batch'], run.G.z_dim], generator=it.rng)
            source, target = features(z.to(run.device), it, scc_names)
            result['scc'] = chosen['scc'] * correlation.scc_loss(source, target,
                                                                 official=chosen['official'])
        if chosen['dcc'] > 0 and dcc_names and it.index % chosen['every'] == 0:
            radius = options['radius'] * run.G.z_dim ** 0.5
            z = correlation.sample_neighbourhood(center(it), options['neighbours'], radius, it.rng)
            source, target = features(z.to(run.device), it, dcc_names)
            result['dcc'] = chosen['dcc'] * correlation.dcc_loss(source, target, options['window'])
        return result

    return [terms]


# ---- setup and state --------------------------------------------------------------------------------


@hookimpl
def setup(run):
    import torch
    from . import inversion
    compression = _compression(run)
    if compression is None or compression.codes is not None:   # off, or codes from --rssa-codes
        return
    warn = lambda message: click.echo(f'Warning: rssa: {message}', err=True)   # noqa: E731
    detector = inversion.lpips_detector(run.options['lpips'], device=run.device, warn=warn)
    images = torch.stack([torch.as_tensor(run.dataset.raw_image(i))
                          for i in range(len(run.dataset))])
    steps = run.options['invert_steps']
    chunks = -(-len(images) // inversion.BATCH)
    with click.progressbar(length=steps * chunks, file=sys.stderr,
                           label=f'rssa: inverting {len(images)} target images into W+') as bar:
        result = inversion.invert(run.G_s, images, steps=steps, lpips_detector=detector,
                                  seed=run.seed, progress=bar.update)
    result = run.broadcast(result)
    compression.set_codes(result.codes)
    click.echo(f'rssa: inverted {len(images)} target images, MSE {result.initial_mse.mean():.4f} '
               f'-> {result.mse.mean():.4f}', err=True)


@hookimpl
def state_dict(run):
    compression = _compression(run)
    if compression is None:
        return {}
    return dict(codes=compression.codes, alphas=compression.alphas.clone())


@hookimpl
def load_state_dict(run, state):
    import torch
    compression = _compression(run)
    if compression is None:
        return
    if state.get('codes') is None:
        raise UserError('the snapshot holds no rssa codes; it was written without compression '
                        '(give the options it was trained with)')
    if not torch.equal(torch.as_tensor(state['alphas']), compression.alphas):
        raise UserError('the snapshot\'s rssa alphas differ from the options; resume or generate '
                        'with the options it was trained with')
    compression.set_codes(state['codes'])


@hookimpl
def fold(run, G):
    if _compression(run) is not None:
        raise NotFoldable('the compression rescales each W+ entry by a ratio of norms, which no '
                          'affine layer can express; generate from the snapshot with gda generate')
