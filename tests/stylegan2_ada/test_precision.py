"""--cpu-bf16: the blocks NVIDIA computes in fp16 run in bfloat16 on the CPU (precision.py)."""

import pytest
import torch

from stylegan2_ada import precision
from stylegan2_ada.discriminator import DiscriminatorBlock, DiscriminatorEpilogue
from stylegan2_ada.generator import SynthesisBlock
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_step import configure_torch

NET = dict(channel_base=256, channel_max=16, num_fp16_res=4, conv_clamp=256)   # fp16: b8, b16


@pytest.fixture
def restore_flag():
    yield
    precision.cpu_bf16 = False


def networks():
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=NET)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture='orig',
                      epilogue_kwargs=dict(mbstd_group_size=4), **NET)
    return G, D


def test_reduced_dtype_per_device(restore_flag):
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    precision.cpu_bf16 = False
    assert precision.reduced_dtype(cpu) == torch.float32
    assert precision.reduced_dtype(cuda) == torch.float16
    precision.cpu_bf16 = True
    assert precision.reduced_dtype(cpu) == torch.bfloat16
    assert precision.reduced_dtype(cuda) == torch.float16
    assert precision.reduced_dtype(torch.device('meta')) == torch.float32


def test_the_training_loop_sets_it_for_the_cpu_and_clears_it_otherwise(restore_flag):
    configure_torch(torch.device('cpu'), cpu_bf16=True)
    assert precision.cpu_bf16 is True
    configure_torch(torch.device('cpu'))
    assert precision.cpu_bf16 is False


def output_dtypes(G, D, z):
    """{block name: dtype of its output activations} over one G and one D forward."""
    dtypes = {}

    def hook(module, inputs, output):
        x = output[0] if isinstance(output, tuple) else output
        dtypes[('D.' if isinstance(module, (DiscriminatorBlock, DiscriminatorEpilogue)) else 'G.')
               + getattr(module, 'name', 'b4')] = x.dtype
    handles = [m.register_forward_hook(hook) for m in [*G.modules(), *D.modules()]
               if isinstance(m, (SynthesisBlock, DiscriminatorBlock, DiscriminatorEpilogue))]
    img = G(z, torch.zeros([len(z), 0]))
    logits = D(img, torch.zeros([len(z), 0]))
    for handle in handles:
        handle.remove()
    return img, logits, dtypes


@pytest.mark.parametrize('flag, reduced', [(False, torch.float32), (True, torch.bfloat16)])
def test_only_the_fp16_blocks_change_precision(restore_flag, flag, reduced):
    G, D = networks()
    precision.cpu_bf16 = flag
    img, logits, dtypes = output_dtypes(G, D, torch.randn([4, 16]))
    assert img.dtype == logits.dtype == torch.float32
    assert dtypes == {'G.b4': torch.float32, 'G.b8': reduced, 'G.b16': reduced,
                      'D.b16': reduced, 'D.b8': reduced, 'D.b4': torch.float32}


def test_bfloat16_stays_close_to_float32_and_r1_double_backward_runs(restore_flag):
    G, D = networks()
    z, c = torch.randn([8, 16]), torch.zeros([8, 0])
    with torch.no_grad():
        img32 = G(z, c, noise_mode='const')
        logits32 = D(img32, c)
    precision.cpu_bf16 = True
    with torch.no_grad():
        img16 = G(z, c, noise_mode='const')
        logits16 = D(img32, c)
    assert not torch.equal(img16, img32)   # really other arithmetic
    # bfloat16 keeps 8 significant bits: about 1/256 relative per value.
    assert (img16 - img32).abs().max() < 0.05 * img32.abs().max()
    assert (logits16 - logits32).abs().max() < 0.05 * logits32.abs().max() + 1e-3
    reals = img32.detach().requires_grad_(True)
    grad, = torch.autograd.grad(D(reals, c).sum(), reals, create_graph=True)
    assert grad.dtype == torch.float32
    grad.square().sum().backward()
    for name, param in D.named_parameters():
        if name == 'b4.out.bias':   # the logits' bias has no gradient w.r.t. the images
            continue
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all(), name
