"""What our CUDA kernels (bias_act, upfirdn2d) buy over the reference ops on one GPU.

Times a 256 px StyleGAN2 (paper256 widths: channel_base 16384, fp16 in the top 4 resolutions,
conv_clamp 256) in three steps: G forward + backward, D forward + backward, and D's R1 penalty
(a double backward through every bias_act and upfirdn2d). The two modes run in one process,
switched by GDA_OPS_REFERENCE, which the ops read on every call. Also records how far the two
modes' generated images differ. Without a CUDA device it says so and exits with status 0.

    python benchmarks/ops_speed.py [--res 256] [--batch 16] [--repeats 20]
                                   [--out benchmarks/results/ops_speed.json]
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import torch

from stylegan2_ada.ops import _cuda_bias_act, _cuda_upfirdn2d, custom_ops


def median_ms(step, repeats, warmup=3):
    """Median wall-clock time of `step` in ms, synchronising the GPU around each run."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def build_networks(res, device):
    from stylegan2_ada.networks import Discriminator, Generator
    common = dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=common)
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, **common)
    return G.to(device).train(), D.to(device).train()


def make_steps(G, D, z, img):
    def g_step():
        G.zero_grad(set_to_none=True)
        G(z, None).square().mean().backward()

    def d_step():
        D.zero_grad(set_to_none=True)
        D(img, None).sum().backward()

    def d_r1_step():
        D.zero_grad(set_to_none=True)
        x = img.detach().requires_grad_(True)
        grad, = torch.autograd.grad(D(x, None).sum(), [x], create_graph=True)
        grad.square().sum().backward()

    return {'G_forward_backward': g_step, 'D_forward_backward': d_step,
            'D_r1_double_backward': d_r1_step}


def set_mode(mode):
    if mode == 'reference':
        os.environ[custom_ops.ENV_REFERENCE] = '1'
    else:
        os.environ.pop(custom_ops.ENV_REFERENCE, None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--res', type=int, default=256)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--out', default='benchmarks/results/ops_speed.json')
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print('ops_speed: no CUDA device here; the kernels can only be timed on a GPU.')
        return 0
    device = torch.device('cuda')
    torch.backends.cudnn.benchmark = True

    set_mode('cuda')
    if _cuda_bias_act.plugin() is None or _cuda_upfirdn2d.plugin() is None:
        print('ops_speed: the CUDA kernels are not available (see the warning above).',
              file=sys.stderr)
        return 1

    torch.manual_seed(0)
    G, D = build_networks(args.res, device)
    z = torch.randn([args.batch, G.z_dim], device=device)
    img = torch.randn([args.batch, 3, args.res, args.res], device=device)
    steps = make_steps(G, D, z, img)

    results, images = {}, {}
    for mode in ('reference', 'cuda'):
        set_mode(mode)
        with torch.no_grad():
            images[mode] = G(z, None, noise_mode='const').float()
        results[mode] = {name: round(median_ms(step, args.repeats), 3)
                         for name, step in steps.items()}
        print(mode, ', '.join(f'{name} {ms:.2f} ms' for name, ms in results[mode].items()))
    set_mode('cuda')

    speedup = {name: round(results['reference'][name] / results['cuda'][name], 3) for name in steps}
    report = dict(
        device=torch.cuda.get_device_name(device), torch=torch.__version__, cuda=torch.version.cuda,
        resolution=args.res, batch=args.batch, repeats=args.repeats,
        networks='z/w 512, 8 mapping layers, channel_base 16384, channel_max 512, '
                 'num_fp16_res 4, conv_clamp 256',
        median_ms=results, speedup_reference_over_cuda=speedup,
        generated_image_max_abs_diff=float((images['reference'] - images['cuda']).abs().max()))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    print('speedup', ', '.join(f'{name} x{s:.2f}' for name, s in speedup.items()))
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
