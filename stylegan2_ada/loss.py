"""StyleGAN2 loss: non-saturating logistic loss, lazy R1 and path-length regularisation.

Phases as NVIDIA's: Gmain (adversarial G loss), Greg (path length), Dmain (adversarial D loss),
Dreg (R1), and the fused 'Gboth'/'Dboth' when regularisation is not lazy. The injection points
enter where docs/hooks.md §5 places them: w transforms between style mixing and synthesis, the
augmentation chain before the AugmentPipe, D heads after D, the adversarial loss form, and the
G loss terms once per iteration after the accumulation rounds.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .extended import render, w_transform_chain
from .extensions import Extensions, owner_of
from .ops import conv2d_gradfix


def softplus_loss(kind, logits):
    """The non-saturating logistic loss of StyleGAN2, per element."""
    if kind == 'D_fake':
        return F.softplus(logits)
    return F.softplus(-logits)   # 'G_fake' and 'D_real'


def per_image(values):
    """Average any per-element values (patch logits, losses) to one value per image."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


def global_path_length_penalty(pl_lengths, pl_mean, decay, all_reduce_sum):
    """(new pl_mean, per-image penalty) over the lengths of ALL processes, with the gradient that
    one process holding the whole batch would get.

    NVIDIA's one-process form: m = lerp(pl_mean, mean(l), decay); penalty_i = (l_i - m)^2, whose
    gradient also flows through m. Across K processes the mean is all-reduced (so every copy of
    pl_mean agrees), but the other processes' lengths are constants here, so the path through m
    is written out: d/dl_j of mean_i (l_i - m)^2 via m is -2 decay (mean(l) - m) / N for every j
    of the global batch of N. `coupling` carries that gradient and is worth 0, so the reported
    penalty is unchanged; averaging the gradients over the K processes then gives the one-process
    gradient exactly. The counts must be equal on every process (they are: the batch splits
    evenly).
    """
    n = pl_lengths.shape[0]
    local_sum = pl_lengths.sum()
    totals = torch.stack([local_sum.detach(), local_sum.new_tensor(float(n))])
    all_reduce_sum(totals)
    batch_mean = totals[0] / totals[1]
    new_mean = pl_mean.lerp(batch_mean, decay)
    coupling = 2 * decay * (batch_mean - new_mean) * (local_sum - local_sum.detach()) / n
    return new_mean, (pl_lengths - new_mean).square() - coupling


class StyleGAN2Loss:
    def __init__(self, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0.9, pl_weight=2,
                 pl_batch_shrink=2, pl_decay=0.01, extensions=None, stats=None,
                 all_reduce_sum=None):
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.ext = extensions if extensions is not None else Extensions()
        self.adv_form = self.ext.exclusive('adv_loss') or softplus_loss
        self.transforms = w_transform_chain(self.ext, 'train')
        self.stats = stats if stats is not None else _NullStats()
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)
        self.ada = None   # an AdaController fed with D's scores on reals, when ADA is on
        self.all_reduce_sum = all_reduce_sum   # given with several processes: pl_mean is global

    # -- network passes -------------------------------------------------------------------------

    def run_G(self, z, c, it, mixing=True, ws_grad=False):
        return render(self.G, z, c, self.transforms, it,
                      self.style_mixing_prob if mixing else 0.0, ws_grad=ws_grad)

    def run_D(self, img, c, it):
        """augmentations -> AugmentPipe -> D (features the active heads read) -> heads."""
        for augment in self.ext.augmentations:
            img = augment(img, it)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        heads = [head for head in self.ext.d_heads if head.active(it.branch)]
        names = sorted({name for head in heads for name in head.features})
        if names:
            logits, feats = self.D(img, c, return_features=names)
        else:
            logits, feats = self.D(img, c), {}
        out = logits
        for head in heads:
            if head.mode == 'replace':
                out = head.module(logits, feats, c, it)
        for head in heads:
            if head.mode == 'add':
                extra = head.module(logits, feats, c, it)
                out = out + extra.reshape(extra.shape[0], *[1] * (out.ndim - 1))
        return out

    def adv(self, kind, logits):
        return per_image(self.adv_form(kind, logits))

    # -- phases ---------------------------------------------------------------------------------

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, it, mixing=True):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'], phase
        do_Gmain = phase in ['Gmain', 'Gboth']
        do_Dmain = phase in ['Dmain', 'Dboth']
        do_Gpl = phase in ['Greg', 'Gboth'] and self.pl_weight != 0
        do_Dr1 = phase in ['Dreg', 'Dboth'] and self.r1_gamma != 0

        if do_Gmain:
            gen = self.run_G(gen_z, gen_c, it, mixing)
            gen_logits = self.run_D(gen.img, gen_c, it)
            loss_G = self.adv('G_fake', gen_logits)
            self.stats.report('Loss/scores/fake', per_image(gen_logits))
            self.stats.report('Loss/G/loss', loss_G)
            loss_G.mean().mul(gain).backward()

        if do_Gpl:
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen = self.run_G(gen_z[:batch_size], gen_c[:batch_size], it, mixing, ws_grad=True)
            img, ws = gen.img, gen.ws
            pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            with conv2d_gradfix.no_weight_gradients():
                pl_grads = torch.autograd.grad(outputs=[(img * pl_noise).sum()], inputs=[ws],
                                               create_graph=True, only_inputs=True)[0]
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            if self.all_reduce_sum is None:   # NVIDIA's code
                pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
                pl_penalty = (pl_lengths - pl_mean).square()
            else:
                pl_mean, pl_penalty = global_path_length_penalty(
                    pl_lengths, self.pl_mean, self.pl_decay, self.all_reduce_sum)
            self.pl_mean.copy_(pl_mean.detach())
            loss_Gpl = pl_penalty * self.pl_weight
            self.stats.report('Loss/pl_penalty', pl_penalty)
            self.stats.report('Loss/G/reg', loss_Gpl)
            (img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

        if do_Dmain:
            with torch.no_grad():
                gen = self.run_G(gen_z, gen_c, it, mixing)
            gen_logits = self.run_D(gen.img, gen_c, it)
            loss_Dgen = self.adv('D_fake', gen_logits)
            self.stats.report('Loss/scores/fake', per_image(gen_logits))
            loss_Dgen.mean().mul(gain).backward()

        if do_Dmain or do_Dr1:
            # R1 differentiates with respect to the reals before any augmentation (NVIDIA).
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c, it)
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
            loss.mean().mul(gain).backward()

    def accumulate_g_loss_terms(self, it):
        """The plugins' G terms: once per iteration, after the adversarial rounds, gain 1.

        Each callable returns already-weighted scalars ({} to skip this iteration); each is
        reported as Loss/G/<owner>/<name> and their sum is backpropagated once.
        """
        total = None
        for index, term in enumerate(self.ext.g_loss_terms):
            owner = owner_of(term, 'g_loss_terms', index)
            for name, value in term(it).items():
                if not torch.is_tensor(value) or value.numel() != 1:
                    raise ValueError(f'G loss term {owner}/{name} must be a scalar tensor, got '
                                     f'{type(value).__name__} {getattr(value, "shape", "")}')
                self.stats.report(f'Loss/G/{owner}/{name}', value)
                total = value.reshape([]) if total is None else total + value.reshape([])
        if total is not None and total.requires_grad:
            total.backward()


class _NullStats:
    def report(self, name, value):
        pass
