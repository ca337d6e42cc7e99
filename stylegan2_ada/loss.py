"""StyleGAN2 loss: non-saturating logistic loss, lazy R1 and path-length regularisation.

Phases as NVIDIA's: Gmain (adversarial G loss + extra G terms), Greg (path length), Dmain
(adversarial D loss), Dreg (R1), and the fused 'Gboth'/'Dboth' when regularisation is not lazy.
Every plugin contribution enters through `Extensions` (see extensions.py).
"""

import numpy as np
import torch
import torch.nn.functional as F

from .extensions import Extensions
from .ops import conv2d_gradfix


def softplus_loss(kind, logits):
    """The non-saturating logistic loss of StyleGAN2, per element."""
    if kind == 'D_fake':
        return F.softplus(logits)
    return F.softplus(-logits)   # 'G_fake' and 'D_real'


def per_image(values):
    """Average any per-element values (patch logits, losses) to one value per image."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


class StyleGAN2Loss:
    def __init__(self, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0.9, pl_weight=2,
                 pl_batch_shrink=2, pl_decay=0.01, extensions=None, stats=None):
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.ext = extensions if extensions is not None else Extensions()
        self.stats = stats if stats is not None else _NullStats()
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)
        self.ada = None   # an AdaController fed with D's scores on reals, when ADA is on

    # -- network passes -------------------------------------------------------------------------

    def run_G(self, z, c, it, ws_grad=False):
        """Mapping (with style mixing) -> w transforms -> synthesis, returning a `gen` dict.

        ws_grad makes ws differentiable even when everything before synthesis is frozen (the
        path-length penalty differentiates the image with respect to ws).
        """
        ws = self.G.mapping(z, c)
        if self.style_mixing_prob > 0 and it.mixing:
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, ws.shape[1]))
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)[:, cutoff:]
        ws = self.ext.transform_ws(ws, it)
        if ws_grad and not ws.requires_grad:
            ws = ws.detach().requires_grad_(True)
        features = {}
        if self.ext.g_features:
            img, features = self.G.synthesis(ws, return_features=self.ext.g_features)
        else:
            img = self.G.synthesis(ws)
        return dict(z=z, c=c, ws=ws, img=img, features=features)

    def run_D(self, img, c, it):
        """Augment -> D (features if asked) -> heads; returns (logits, d_features)."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        img = self.ext.augment_images(img, it)
        d_features = {}
        if self.ext.d_features:
            logits, d_features = self.D(img, c, return_features=self.ext.d_features)
        else:
            logits = self.D(img, c)
        logits = self.ext.heads(it, logits, d_features, img, c)
        return logits, d_features

    def adv(self, kind, logits):
        form = self.ext.adv_loss if self.ext.adv_loss is not None else softplus_loss
        return per_image(form(kind, logits))

    def extra_terms(self, network, it, gen):
        total = 0
        for term in self.ext.loss_terms:
            if term.phase == network:
                value = term.fn(it, gen)
                self.stats.report(f'Loss/{term.name}', value)
                total = total + value
        return total

    # -- phases ---------------------------------------------------------------------------------

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, it):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'], phase
        do_Gmain = phase in ['Gmain', 'Gboth']
        do_Dmain = phase in ['Dmain', 'Dboth']
        do_Gpl = phase in ['Greg', 'Gboth'] and self.pl_weight != 0
        do_Dr1 = phase in ['Dreg', 'Dboth'] and self.r1_gamma != 0

        if do_Gmain:
            gen = self.run_G(gen_z, gen_c, it)
            gen['logits'], gen['d_features'] = self.run_D(gen['img'], gen_c, it)
            loss_G = self.adv('G_fake', gen['logits'])
            self.stats.report('Loss/scores/fake', per_image(gen['logits']))
            self.stats.report('Loss/G/loss', loss_G)
            extra = self.extra_terms('G', it, gen)
            (loss_G.mean() + extra).mul(gain).backward()

        if do_Gpl:
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen = self.run_G(gen_z[:batch_size], gen_c[:batch_size], it, ws_grad=True)
            img, ws = gen['img'], gen['ws']
            pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            with conv2d_gradfix.no_weight_gradients():
                pl_grads = torch.autograd.grad(outputs=[(img * pl_noise).sum()], inputs=[ws],
                                               create_graph=True, only_inputs=True)[0]
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            loss_Gpl = (pl_lengths - pl_mean).square() * self.pl_weight
            self.stats.report('Loss/pl_penalty', (pl_lengths - pl_mean).square())
            self.stats.report('Loss/G/reg', loss_Gpl)
            (img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

        if do_Dmain:
            with torch.no_grad():
                gen = self.run_G(gen_z, gen_c, it)
            gen_logits, _ = self.run_D(gen['img'], gen_c, it)
            loss_Dgen = self.adv('D_fake', gen_logits)
            self.stats.report('Loss/scores/fake', per_image(gen_logits))
            loss_Dgen.mean().mul(gain).backward()

        if do_Dmain or do_Dr1:
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits, real_features = self.run_D(real_img_tmp, real_c, it)
            real_scores = per_image(real_logits)
            self.stats.report('Loss/scores/real', real_scores)
            self.stats.report('Loss/signs/real', real_scores.sign())
            loss = real_scores * 0
            if do_Dmain:
                if self.ada is not None:
                    self.ada.accumulate(real_scores)
                loss_Dreal = self.adv('D_real', real_logits)
                self.stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
                loss = loss + loss_Dreal
            if do_Dr1:
                with conv2d_gradfix.no_weight_gradients():
                    r1_grads = torch.autograd.grad(outputs=[real_scores.sum()],
                                                   inputs=[real_img_tmp], create_graph=True,
                                                   only_inputs=True)[0]
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                self.stats.report('Loss/r1_penalty', r1_penalty)
                self.stats.report('Loss/D/reg', r1_penalty * (self.r1_gamma / 2))
                loss = loss + r1_penalty * (self.r1_gamma / 2)
            extra = 0
            if do_Dmain:
                extra = self.extra_terms('D', it, dict(real_img=real_img, real_c=real_c,
                                                       real_logits=real_logits,
                                                       real_features=real_features,
                                                       gen=gen, gen_logits=gen_logits))
            (loss.mean() + extra).mul(gain).backward()


class _NullStats:
    def report(self, name, value):
        pass
