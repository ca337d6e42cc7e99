"""patchd's head: which D map it reads at each resolution, channels read from D, its output on a
known input, the patch-level D loss and R1 computed by the loop on its logits."""

import math

import pytest
import torch

from gda_plugins.patchd.head import (PatchHead, block_channels, candidate_blocks, default_block)
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import DHead, Extensions
from stylegan2_ada.loss import StyleGAN2Loss
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_stats import TickStats

from gda_testkit import cdc as CDC


def small_D(resolution, **kwargs):
    kwargs.setdefault('channel_base', 4 * resolution)
    kwargs.setdefault('channel_max', 8)
    return Discriminator(0, resolution, 3, epilogue_kwargs=dict(mbstd_group_size=2), **kwargs)


@pytest.mark.parametrize('resolution,block,size', [
    (16, 'b16', 8), (32, 'b16', 8), (64, 'b16', 8), (128, 'b32', 16), (256, 'b64', 32)])
def test_the_default_map_is_resolution_over_8_but_at_least_8x8(resolution, block, size):
    D = small_D(resolution)
    assert default_block(resolution) == block
    blocks = candidate_blocks(D)
    assert blocks == [block]
    head = PatchHead(blocks, {block: block_channels(D, block)})
    torch.manual_seed(0)
    _, feats = D(torch.randn(2, 3, resolution, resolution), None, return_features=blocks)
    out = head(None, feats, None, CDC.iteration())
    assert out.shape == (2, 1, size, size)
    assert default_block(512) == 'b128' and default_block(1024) == 'b256'


def test_channels_come_from_the_network():
    # NVIDIA's paper256 D widths (channel_base 16384, at most 512): the 32x32 map has 512
    # channels, as the official Extra's 512 -> 1 conv expects.
    D = Discriminator(0, 256, 3, channel_base=16384, channel_max=512)
    assert block_channels(D, 'b64') == 512
    assert PatchHead(['b64'], {'b64': 512}).convs['b64'].weight.shape == (1, 512, 3, 3)
    narrow = small_D(256)
    assert block_channels(narrow, 'b64') == 8 == narrow.b64.conv1.out_channels


def test_the_head_is_a_3x3_conv_with_bias_and_leaky_relu_on_a_known_input():
    head = PatchHead(['b16'], {'b16': 2})
    conv = head.convs['b16']
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = math.sqrt(2 * 9)   # centre tap; times the equalised gain = 1
        conv.weight[0, 1, 0, 0] = math.sqrt(2 * 9)   # top-left tap of channel 1
        conv.bias.fill_(0.5)
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0] = torch.tensor([[1., -2.], [3., -4.]])
    feats[0, 1] = torch.tensor([[10., 0.], [0., 0.]])   # reaches output (1, 1) only (zero padding)
    out = head(None, {'b16': feats}, None, CDC.iteration())

    def lrelu(x):
        return math.sqrt(2) * (x if x > 0 else 0.2 * x)
    expected = [[lrelu(1 + 0.5), lrelu(-2 + 0.5)], [lrelu(3 + 0.5), lrelu(-4 + 10 + 0.5)]]
    assert torch.allclose(out[0, 0], torch.tensor(expected))


def tiny_loss(head, stats=None):
    torch.manual_seed(0)
    G = Generator(16, 0, 16, 16, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = small_D(16)
    ext = Extensions(d_heads=[DHead('patch', head, features=('b16',), branches={'patch'})])
    return StyleGAN2Loss(G, D, extensions=ext, stats=stats, pl_weight=0), D


def test_the_patch_level_d_loss_averages_softplus_over_patches_per_image():
    head = PatchHead(['b16'], {'b16': 8})
    loss, D = tiny_loss(head)
    torch.manual_seed(1)
    img = torch.randn(2, 3, 16, 16)
    patch = loss.run_D(img, None, CDC.iteration(branch='patch'))
    _, feats = D(img, None, return_features=['b16'])
    assert torch.allclose(patch, head(None, feats, None, None)) and patch.shape == (2, 1, 8, 8)
    # Known logits -> hand-computed per-image losses: mean over the 64 patches of softplus(-x)
    # for reals and softplus(x) for fakes.
    logits = torch.zeros(2, 1, 8, 8)
    logits[0, 0, :4] = 2.0            # image 0: half the patches at 2, half at 0
    logits[1] = -1.0                  # image 1: every patch at -1
    real = [(math.log1p(math.exp(-2)) + math.log(2)) / 2, math.log1p(math.e)]
    fake = [(math.log1p(math.exp(2)) + math.log(2)) / 2, math.log1p(math.exp(-1))]
    assert torch.allclose(loss.adv('D_real', logits), torch.tensor(real))
    assert torch.allclose(loss.adv('D_fake', logits), torch.tensor(fake))
    # On the image branch the core logits are used: one per image.
    assert loss.run_D(img, None, CDC.iteration(branch='image')).shape == (2, 1)


def test_r1_differentiates_the_per_image_mean_of_the_patch_logits():
    head = PatchHead(['b16'], {'b16': 8})
    stats = TickStats('cpu')
    loss, D = tiny_loss(head, stats)
    torch.manual_seed(2)
    real = torch.randn(2, 3, 16, 16)
    D.requires_grad_(True)
    loss.accumulate_gradients('Dreg', real, torch.zeros(2, 0), torch.randn(2, 16),
                              torch.zeros(2, 0), gain=1, it=CDC.iteration(branch='patch'))
    x = real.clone().requires_grad_(True)
    _, feats = D(x, None, return_features=['b16'])
    scores = head(None, feats, None, None).mean(dim=[1, 2, 3])
    grad, = torch.autograd.grad(scores.sum(), x)
    expected = grad.square().sum(dim=[1, 2, 3]).mean()
    assert stats.collect()['Loss/r1_penalty'] == pytest.approx(float(expected), rel=1e-5)
    assert head.convs['b16'].weight.grad is not None   # the head trains through R1 too


def test_highp_draws_one_of_the_next_maps_per_pass_from_it_rng():
    D = small_D(256)
    blocks = candidate_blocks(D, 'auto', highp=3)
    assert blocks == ['b64', 'b32', 'b16']
    head = PatchHead(blocks, {name: block_channels(D, name) for name in blocks})
    feats = {name: torch.zeros(1, 8, size, size) for name, size in zip(blocks, (32, 16, 8))}
    it = CDC.iteration()
    sizes = [head(None, feats, None, it).shape[-1] for _ in range(60)]
    assert set(sizes) == {32, 16, 8}
    again = CDC.iteration()
    assert [head(None, feats, None, again).shape[-1] for _ in range(60)] == sizes
    assert candidate_blocks(D, 'b32', highp=2) == ['b32', 'b16']


@pytest.mark.parametrize('resolution,block,highp,message', [
    (256, 'auto', 5, '--patchd-highp 5: only 4 block outputs start at b64 (b64, b32, b16, b8)'),
    (256, 'b99', 1, "--patchd-block b99: this D has no block 'b99'; choose one of b256, b128"),
    (8, 'auto', 1, 'patchd needs a D of at least 16 px for its 8x8 patch map; this D is 8 px'),
])
def test_maps_that_do_not_exist_are_user_errors(resolution, block, highp, message):
    with pytest.raises(UserError) as error:
        candidate_blocks(small_D(resolution), block, highp)
    assert message in str(error.value)
