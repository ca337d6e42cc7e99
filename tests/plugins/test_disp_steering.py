"""disp's prior steers G: fc0's prior columns move at the core learning rate from zero (the adapted
G reproduces the source at iteration 0), and after a short run on tiny networks swapping the prior
moves w by a large fraction of what a new z does (0.57 measured at 300 iterations; the old
x0.01-rate columns gave 7e-5 after 1250)."""

import copy
import os
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from gda_core import generate
from gda_core.cli import main
from gda_plugins.disp.prior import centring
from gda_plugins.disp.steering import PriorColumns, fold_centring, fold_into, for_mapping
from stylegan2_ada.layers import FullyConnectedLayer
from stylegan2_ada.reparam import set_weight_reparam

from gda_testkit import plugins as HP

DIM = 12


class VGGLike(torch.nn.Module):
    """NVIDIA vgg16.pt's signature: a fixed linear map of the 4x4-pooled image."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(48, DIM, generator=torch.Generator().manual_seed(3)))

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img / 255, 4).flatten(1) @ self.proj


def test_prior_columns_offset_only_the_prior_columns_at_100x_the_stored_scale():
    columns = PriorColumns(out_features=2, z_dim=1, embed_features=2, lr_multiplier=0.01)
    weight = torch.tensor([[1., 2., 3.], [4., 5., 6.]])
    assert torch.equal(columns(weight), weight)                        # zero offset at init
    with torch.no_grad():
        columns.delta.copy_(torch.tensor([[0.5, -1.], [0., 2.]]))
    assert torch.equal(columns(weight), torch.tensor([[1., 52., -97.], [4., 5., 206.]]))
    # Effective weight = stored * lr_multiplier / sqrt(in): the offset enters as delta / sqrt(in),
    # as a normal-rate layer's weight does, while fc0's own weights enter x0.01.
    fc0 = FullyConnectedLayer(3, 2, lr_multiplier=0.01)
    assert fc0.weight_gain * columns.scale == pytest.approx(1 / np.sqrt(3))


def test_at_iteration_0_the_conditioned_g_reproduces_the_source_for_any_prior():
    G, _ = HP.tiny_networks()
    G_s = copy.deepcopy(G)
    columns = for_mapping(G.mapping)                  # built before conditioning, as in training
    G.add_conditioning(DIM)
    set_weight_reparam(G.mapping.fc0, columns)
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(0))
    c = torch.randn([4, DIM], generator=torch.Generator().manual_seed(1))
    images = G(z, c, noise_mode='const')
    assert torch.allclose(images, G_s(z, torch.zeros([4, 0]), noise_mode='const'), atol=1e-5)
    with torch.no_grad():
        columns.delta.normal_()
    assert not torch.allclose(G(z, c, noise_mode='const'), images, atol=1e-3)   # now c steers


def test_folding_gives_a_plain_g_that_takes_raw_priors():
    G, _ = HP.tiny_networks()
    columns = for_mapping(G.mapping)
    G.add_conditioning(DIM)
    with torch.no_grad():
        columns.delta.normal_()
        G.mapping.embed.bias.normal_()
    bank = torch.rand([5, DIM]) * 3 + 7
    mean, scale = centring(bank)
    centred = (bank - mean) / scale
    assert torch.allclose(centred.mean(0), torch.zeros(DIM), atol=1e-5)
    assert float(centred.square().mean()) == pytest.approx(1, rel=1e-5)    # unit RMS
    z = torch.randn([5, G.z_dim], generator=torch.Generator().manual_seed(2))
    set_weight_reparam(G.mapping.fc0, columns)
    expected = G.mapping(z, (bank - mean) / scale)
    plain = copy.deepcopy(G)
    set_weight_reparam(plain.mapping.fc0, None)
    fold_into(plain.mapping.fc0, columns)
    fold_centring(plain.mapping.embed, mean, scale)
    assert torch.allclose(plain.mapping(z, bank), expected, atol=1e-4)


def coloured_targets(folder):
    """Six 16 px images of distinct colours: priors that tell the images apart."""
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    palette = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 230, 30), (30, 220, 220),
               (220, 30, 220)]
    for k, colour in enumerate(palette):
        pixels = np.clip(np.array(colour)[None, None] + rng.randn(16, 16, 3) * 20, 0, 255)
        PIL.Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f'{k}.png'))
    return str(folder)


def test_after_a_short_run_the_prior_moves_w_by_a_large_fraction_of_a_new_z(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.script(VGGLike().eval()).save(str(tmp_path / 'extractor.pt'))
    data, source = coloured_targets(tmp_path / 'data'), HP.write_source(tmp_path / 'source.pkl')
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path / 'runs'), '--plugin', 'disp',
                                       '--disp-extractor', str(tmp_path / 'extractor.pt'),
                                       '--iters', '300', '--snap', '0', '--ema', '0'])
    assert result.exit_code == 0, result.output
    model = generate.open_model(HP.snapshot_path(next((tmp_path / 'runs').iterdir())))
    disp = model.run.plugin('disp').ns
    priors = (disp.bank - disp.centre[0]) / disp.centre[1]     # what G is conditioned on
    rng = torch.Generator().manual_seed(0)
    z, other_z = torch.randn([2, 256, model.G.z_dim], generator=rng)
    i = torch.randint(len(priors), [256], generator=rng)
    j = (i + torch.randint(1, len(priors), [256], generator=rng)) % len(priors)
    with torch.no_grad():
        w = model.G.mapping(z, priors[i])[:, 0]
        swapped_prior = (w - model.G.mapping(z, priors[j])[:, 0]).norm(dim=1).mean()
        new_z = (w - model.G.mapping(other_z, priors[i])[:, 0]).norm(dim=1).mean()
    assert swapped_prior / new_z > 0.4, float(swapped_prior / new_z)
