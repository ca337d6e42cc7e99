"""Check that one iteration of our loss computes NVIDIA's gradients, given their checkout.

Builds a small G and D (32 px, skip G, resnet D) with our code, copies the weights into NVIDIA's
networks (the state_dicts are the same), and runs each phase (Gmain, Greg with path length, Dmain,
Dreg with R1) of both StyleGAN2Loss classes on the same reals and latents, with both gradfix ops on
as both training loops set them. Style mixing and noise inputs are off (their random draws are not
ordered alike), so any difference is the loss itself. Prints the largest gradient difference per
phase and exits 1 above --tolerance. NVIDIA's code is read from --nvidia, never shipped or tested.

    python benchmarks/loss_vs_nvidia.py --nvidia PATH/TO/stylegan2-ada-pytorch
"""

import argparse
import pathlib
import sys
import warnings

import numpy as np
import torch

from stylegan2_ada.extensions import Iteration
from stylegan2_ada.loss import StyleGAN2Loss
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.ops import conv2d_gradfix, grid_sample_gradfix

PHASES = [('Gmain', 1), ('Greg', 4), ('Dmain', 1), ('Dreg', 16)]   # gain = the lazy interval
NET = dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=256)


def networks(G_class, D_class):
    G = G_class(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(architecture='skip', use_noise=False, **NET))
    D = D_class(c_dim=0, img_resolution=32, img_channels=3, architecture='resnet',
                epilogue_kwargs=dict(mbstd_group_size=4), **NET)
    return G, D


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--nvidia', required=True, metavar='PATH',
                        help='checkout of NVlabs/stylegan2-ada-pytorch')
    parser.add_argument('--gamma', type=float, default=1.0)
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest allowed gradient difference relative to the largest gradient')
    args = parser.parse_args()
    if not (pathlib.Path(args.nvidia) / 'training' / 'loss.py').is_file():
        parser.error(f'--nvidia {args.nvidia} is not a stylegan2-ada-pytorch checkout')
    sys.path.insert(0, args.nvidia)
    warnings.filterwarnings('ignore', message='.*gradfix not supported.*')
    from torch_utils.ops import conv2d_gradfix as nv_conv2d_gradfix
    from torch_utils.ops import grid_sample_gradfix as nv_grid_sample_gradfix
    from training.loss import StyleGAN2Loss as NvLoss
    from training.networks import Discriminator as NvD
    from training.networks import Generator as NvG
    for module in (conv2d_gradfix, grid_sample_gradfix, nv_conv2d_gradfix, nv_grid_sample_gradfix):
        module.enabled = True

    torch.manual_seed(0)
    G, D = networks(Generator, Discriminator)
    nG, nD = networks(NvG, NvD)
    nG.load_state_dict(G.state_dict())
    nD.load_state_dict(D.state_dict())
    ours = StyleGAN2Loss(G, D, r1_gamma=args.gamma, style_mixing_prob=0.0, pl_weight=2)
    theirs = NvLoss(device=torch.device('cpu'), G_mapping=nG.mapping, G_synthesis=nG.synthesis,
                    D=nD, r1_gamma=args.gamma, style_mixing_prob=0.0, pl_weight=2)
    rng = np.random.RandomState(0)
    real = torch.from_numpy(rng.rand(8, 3, 32, 32)).float() * 2 - 1
    z, c = torch.from_numpy(rng.randn(8, 16)).float(), torch.zeros([8, 0])
    it = Iteration(index=0, cur_nimg=0, batch_size=8, device=torch.device('cpu'),
                   rng=torch.Generator().manual_seed(0))
    worst_ratio = 0.0
    for phase, gain in PHASES:
        mine, nvidia = (G, nG) if phase.startswith('G') else (D, nD)
        for module in (G, D, nG, nD):
            module.requires_grad_(module is mine or module is nvidia)
            module.zero_grad(set_to_none=True)
        torch.manual_seed(5)   # the path-length noise: one draw, same order in both
        ours.accumulate_gradients(phase, real, c, z, c, gain, it, mixing=False)
        torch.manual_seed(5)
        theirs.accumulate_gradients(phase=phase, real_img=real, real_c=c, gen_z=z, gen_c=c,
                                    sync=True, gain=gain)
        diff = scale = 0.0
        for (name, p), (_, q) in zip(mine.named_parameters(), nvidia.named_parameters()):
            if (p.grad is None) != (q.grad is None):
                raise SystemExit(f'{phase}: {name} has a gradient in only one implementation')
            if p.grad is not None:
                diff = max(diff, float((p.grad - q.grad).abs().max()))
                scale = max(scale, float(q.grad.abs().max()))
        worst_ratio = max(worst_ratio, diff / max(scale, 1e-30))
        print(f'{phase:6s} largest gradient difference {diff:.3g} (largest gradient {scale:.3g})')
    print(f'pl_mean: ours {float(ours.pl_mean):.9g}, NVIDIA {float(theirs.pl_mean):.9g}')
    if worst_ratio > args.tolerance:
        raise SystemExit(f'gradients differ by {worst_ratio:.3g} of their size (> {args.tolerance})')
    print(f'match: largest difference {worst_ratio:.3g} of the largest gradient')


if __name__ == '__main__':
    main()
