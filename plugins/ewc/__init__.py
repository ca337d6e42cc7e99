"""ewc: elastic weight consolidation for few-shot adaptation (Li, Zhang, Lu, Shechtman, "Few-shot
Image Generation with Elastic Weight Consolidation", NeurIPS 2020), a baseline of the few-shot papers.

Before adapting, the importance of each generator weight for the source is measured as the
diagonal Fisher information of the source discriminator's log-likelihood log sigmoid(D(G(z))) on
images of the source generator (D plays the role of the likelihood: the paper freezes it at the
source to get a fixed objective). Fine-tuning then adds lambda * sum F (theta - theta_S)^2 to the G
objective. The Fisher is estimated once at the start of a fresh run and saved in every snapshot
(plugin state), so resume and generation never recompute it.
"""

import math
import zlib

from gda_hooks import hookimpl, non_negative, Option, positive
from stylegan2_ada.errors import UserError

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


DEFAULT_LAMBDA = 1e4   # chosen by a sweep at our scale (README section): lambda * mean(F) ~ 0.2-0.4


@hookimpl
def options():
    return [Option('lambda', float, DEFAULT_LAMBDA, 'Weight of the EWC penalty '
                                                    'lambda * sum F (theta - theta_S)^2',
                   validate=non_negative),
            Option('samples', int, 256, 'Generated images the Fisher information is averaged over',
                   validate=positive)]


def _matched_names(G, G_s):
    """G's parameters that have a source value: same name and shape in G_s (a parameter a plugin
    added or widened, such as disp's conditioning embedding, has none and is not penalised)."""
    source = dict(G_s.named_parameters())
    return [name for name, param in G.named_parameters()
            if name in source and source[name].shape == param.shape]


def _seed(seed):
    import numpy as np
    state = np.random.SeedSequence([int(seed), zlib.crc32(b'ewc')]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


@hookimpl
def g_loss_terms(run):
    from .fisher import ewc_penalty
    if run.mode == 'generate':
        return []
    if run.G_s is None:
        raise UserError('ewc keeps G near its source, so it needs a source network; give '
                        '--source PATH|URL|PRESET instead of --source none')

    def ewc(it):
        pairs = _pairs(run)
        params, sources, fisher = zip(*pairs) if pairs else ((), (), ())
        return {'ewc': ewc_penalty(params, sources, fisher, run.options['lambda'])}
    return [ewc]


def _pairs(run):
    """(live G parameter, its source value, its Fisher) for every penalised parameter, made once
    the Fisher exists (after setup or load_state_dict)."""
    import torch
    ns = run.ns
    if getattr(ns, 'pairs', None) is None:
        if getattr(ns, 'fisher', None) is None:
            raise UserError('ewc has no Fisher information: the run skipped setup and the snapshot '
                            'holds no ewc state')
        source = dict(run.G_s.named_parameters())
        ns.pairs = [(run.G.get_parameter(name),
                     source[name].detach().to(run.device, torch.float32),
                     importance.to(run.device))
                    for name, importance in ns.fisher.items()]
    return ns.pairs


@hookimpl
def setup(run):
    """Estimate the Fisher information of the source generator G_s (= G before any step).

    G_s renders without the run's plugins (no conditioning, transforms or reparams): the Fisher
    describes the source model, whatever the plugin order, and D is scored by its own output layer.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from .fisher import empirical_fisher
    G_s, D = run.G_s, run.D
    names = _matched_names(run.G, G_s)
    params = [G_s.get_parameter(name) for name in names]
    samples = run.options['samples']
    chunk = max(int(run.core.get('batch_gpu') or 4), 1)   # D's minibatch-std sees training-sized groups
    generator = torch.Generator().manual_seed(_seed(run.seed))

    def log_likelihoods(batch):
        z = torch.randn([chunk, G_s.z_dim], generator=generator).to(run.device)
        c = torch.zeros([chunk, 0], device=run.device)
        if G_s.c_dim > 0:   # a label-conditioned source: G and D see the same dataset labels
            picks = torch.randint(len(run.dataset), [chunk], generator=generator).tolist()
            c = torch.as_tensor(np.stack([run.dataset.raw_label(i) for i in picks]),
                                dtype=torch.float32, device=run.device)
        img = G_s(z, c)
        logits = D(img, c if D.c_dim > 0 else torch.zeros([chunk, 0], device=run.device))
        return -F.softplus(-logits.reshape(-1))   # log sigmoid(D(G(z)))

    saved = [param.requires_grad for param in params]
    for param in params:
        param.requires_grad_(True)
    try:
        with torch.enable_grad():
            fisher = empirical_fisher(log_likelihoods, params, math.ceil(samples / chunk))
    finally:
        for param, flag in zip(params, saved):
            param.requires_grad_(flag)
    run.ns.fisher = dict(zip(names, fisher))
    run.ns.samples = math.ceil(samples / chunk) * chunk
    run.ns.pairs = None
    count = sum(value.numel() for value in fisher)
    run.report('ewc/fisher_mean', sum(float(value.sum()) for value in fisher) / max(count, 1))


@hookimpl
def state_dict(run):
    return dict(fisher={name: value.detach().cpu() for name, value in run.ns.fisher.items()},
                samples=int(run.ns.samples))


@hookimpl
def load_state_dict(run, state):
    import torch
    if run.mode == 'generate':
        return   # the Fisher only shapes training
    run.ns.fisher = {name: torch.as_tensor(value).to(run.device)
                     for name, value in state['fisher'].items()}
    run.ns.samples = int(state.get('samples', 0))
    run.ns.pairs = None
