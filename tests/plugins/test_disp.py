"""disp: the slides' hinge losses and projection term by hand, the prior bank (extraction, mixup,
GMM) on toys, identity at init, and end to end through gda train / generate / export with a tiny
TorchScript stand-in for NVIDIA's vgg16.pt (same call signature)."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import stylegan2_ada
from gda_core import generate
from gda_core.cli import main
from gda_plugins import disp
from gda_plugins.disp import prior
from gda_plugins.disp.projection import ProjectionHead, hinge_loss
from stylegan2_ada.dataset import ImageFolderDataset

from gda_testkit import plugins as HP

DIM = 12


class VGGLike(torch.nn.Module):
    """NVIDIA vgg16.pt's signature; return_features gives a fixed linear map of the pooled image."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(48, DIM, generator=torch.Generator().manual_seed(3)))

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert return_features and img.shape[1] == 3
        return F.adaptive_avg_pool2d(img / 255, 4).flatten(1) @ self.proj


class Plain(torch.nn.Module):
    """An extractor that takes the image alone and returns a map (flattened by disp)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(img, 8)


def script(module, path):
    with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript; NVIDIA's detectors are TorchScript
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.script(module.eval()).save(str(path))
    return str(path)


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.load(path)


@pytest.fixture(scope='module')
def extractor(tmp_path_factory):
    return script(VGGLike(), tmp_path_factory.mktemp('extractor') / 'vgg-like.pt')


def test_hinge_losses_by_hand():
    logits = torch.tensor([-2., 0., 0.5, 3.])
    assert torch.equal(hinge_loss('G_fake', logits), torch.tensor([2., 0., -0.5, -3.]))
    assert torch.equal(hinge_loss('D_real', logits), torch.tensor([3., 1., 0.5, 0.]))
    assert torch.equal(hinge_loss('D_fake', logits), torch.tensor([0., 1., 1.5, 4.]))
    assert disp.adv_loss(None) is hinge_loss   # the form the loop uses for every adversarial term


def test_projection_term_is_zero_at_init_then_d_emb_of_c_dot_d_f():
    head = ProjectionHead(c_dim=4, channels=2)
    phi = torch.tensor([[1., -2.], [0.5, 3.]])
    c = torch.tensor([[2., 2., 2., 2.], [1., -1., 1., -1.]])   # second moments 4 and 1
    assert torch.equal(head(None, {'b4.fc': phi}, c), torch.zeros(2))
    with torch.no_grad():
        head.embed.weight.copy_(torch.tensor([[1., 0., 0., 0.], [0., 2., 0., 2.]]))
    # y = c / rms(c) = [1,1,1,1] and [1,-1,1,-1]; D_emb(y) = W y / sqrt(4) = [0.5, 2] and [0.5, -2]
    expected = torch.tensor([0.5 * 1 + 2 * -2, 0.5 * 0.5 + -2 * 3])
    assert torch.allclose(head(None, {'b4.fc': phi}, c), expected)


def test_extraction_follows_the_detector_convention(tmp_path, extractor):
    images = np.random.RandomState(0).randint(0, 256, [3, 1, 16, 16]).astype(np.uint8)   # grayscale
    module = load(extractor)
    bank = prior.extract(module, images, 'cpu')
    rgb = torch.as_tensor(images).float().repeat(1, 3, 1, 1)
    assert torch.allclose(bank, VGGLike()(rgb, return_features=True), atol=1e-5)
    assert prior.feature_dim(module, 1, 16, 'cpu') == DIM
    plain = load(script(Plain(), tmp_path / 'plain.pt'))
    assert torch.allclose(prior.extract(plain, images, 'cpu'), F.avg_pool2d(rgb, 8).flatten(1))


def test_mixup_draws_lie_between_two_bank_entries():
    bank = torch.tensor([[0., 0., 1.], [2., 4., 1.], [10., 10., 10.]])
    draws = prior.mixup(bank, 200, torch.Generator().manual_seed(0))
    found = 0
    for draw in draws:
        # draw = lam * a + (1 - lam) * b for some pair (a, b) and lam in [0, 1]
        ok = False
        for a in bank:
            for b in bank:
                d = a - b
                lam = float((draw - b) @ d / (d @ d)) if float(d @ d) > 0 else 0.0
                if -1e-5 <= lam <= 1 + 1e-5 and torch.allclose(lam * a + (1 - lam) * b, draw, atol=1e-4):
                    ok = True
        found += ok
    assert found == 200
    assert len({tuple(d.tolist()) for d in draws}) > 100   # i == j gives the entry itself


def test_gmm_finds_two_clusters_and_samples_around_them():
    rng = np.random.RandomState(0)
    data = torch.tensor(np.concatenate([rng.randn(30, 2) * 0.1, rng.randn(50, 2) * 0.1 + 10]),
                        dtype=torch.float32)
    gmm = prior.fit_gmm(data, 2, seed=0)
    order = gmm['means'][:, 0].argsort()
    assert torch.allclose(gmm['means'][order], torch.tensor([[0., 0.], [10., 10.]]), atol=0.1)
    assert torch.allclose(gmm['weights'][order], torch.tensor([30 / 80, 50 / 80]), atol=1e-4)
    # Variances: each cluster's own (0.01) plus the floor (1% of the data's variance, about 0.25).
    assert torch.all((gmm['variances'] > 0.2) & (gmm['variances'] < 0.35))
    draws = prior.sample_gmm(gmm, 400, torch.Generator().manual_seed(1), 'cpu')
    near = ((draws[:, None] - gmm['means'][None]).norm(dim=2) < 2.5).any(dim=1)
    assert bool(near.all())
    assert 0.5 < float((draws[:, 0] > 5).float().mean()) < 0.75
    assert prior.fit_gmm(data[:3], 10)['means'].shape == (3, 2)   # at most one component per point


def test_identity_at_init_g_and_d_behave_as_the_unconditional_source():
    G, D = HP.tiny_networks()
    G_s, D_s = copy.deepcopy(G), copy.deepcopy(D)
    G.add_conditioning(DIM)   # what the engine does for disp's Conditioning
    head = ProjectionHead(DIM, D.b4.fc.out_features)
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(0))
    c = torch.randn([4, DIM], generator=torch.Generator().manual_seed(1)) * 30
    images = G(z, c, noise_mode='const')
    assert torch.allclose(images, G_s(z, torch.zeros([4, 0]), noise_mode='const'), atol=1e-5)
    logits, feats = D(images, c, return_features=['b4.fc'])
    total = logits.reshape(-1) + head(logits, feats, c)
    assert torch.equal(total, D_s(images, None).reshape(-1))


@pytest.fixture(scope='module')
def trained(tiny, extractor, tmp_path_factory):
    data, source = tiny
    out = tmp_path_factory.mktemp('disp')
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(out / 'runs'), '--plugin', 'disp', '--disp-extractor',
                                       extractor, '--iters', '3', '--snap', '1', '--ema', '0'])
    assert result.exit_code == 0, result.output   # --ema 0: G_ema is G, so 3 steps show in renders
    return dict(data=data, source=source, out=out, output=result.output,
                snapshot=HP.snapshot_path(next((out / 'runs').iterdir())))


def test_the_bank_is_c_of_every_image_and_is_saved_with_the_model(trained, extractor):
    snapshot = stylegan2_ada.load(trained['snapshot'])
    record = snapshot['gda']['plugins'][0]
    assert record['name'] == 'disp' and record['state']['extractor'] == extractor
    dataset = ImageFolderDataset(trained['data'])
    images = torch.as_tensor(np.stack([dataset[i][0] for i in range(len(dataset))])).float()
    assert torch.allclose(record['state']['bank'], VGGLike()(images, return_features=True), atol=1e-4)
    G = snapshot['G_ema']
    assert G.c_dim == DIM and G.init_kwargs['c_dim'] == DIM and 'mapping.embed.weight' in G.state_dict()
    head = snapshot['gda']['loop']['modules']['param_groups/disp/projection']
    assert head['embed.weight'].abs().sum() > 0                 # the projection head trained
    model = generate.open_model(trained['snapshot'])
    assert torch.equal(model.run.plugin('disp').ns.bank, record['state']['bank'])


def test_the_conditioning_changes_outputs_once_trained(trained):
    model = generate.open_model(trained['snapshot'])
    bank = model.run.plugin('disp').ns.bank
    z = torch.randn([1, model.G.z_dim], generator=torch.Generator().manual_seed(0)).repeat(2, 1)
    images = generate.render(model, z, bank[:2])
    # At init the new fc0 columns are zero, so two priors give bit-identical images; after 3
    # steps at the core lr (the prior columns' offset) the difference is real.
    assert (images[0] - images[1]).abs().max() > 0
    source = stylegan2_ada.load(trained['source'])['G_ema']
    source.add_conditioning(DIM)
    before = source(z, bank[:2], noise_mode='const')
    assert torch.equal(before[0], before[1])
    ws = model.G.mapping(z, bank[:2])
    assert (ws[0] - ws[1]).abs().max() > 1e-6
    # gda generate's default c: mixups of bank entries, seeded per seed.
    c = model.default_c(3, seed=5)
    assert c.shape == (3, DIM) and torch.equal(c, model.default_c(3, seed=5))
    assert not torch.equal(c, model.default_c(3, seed=6))


def test_generate_and_export(trained):
    out = trained['out']
    result = CliRunner().invoke(main, ['generate', '--network', trained['snapshot'], '--seeds',
                                       '0-2', '--outdir', str(out / 'images'), '--pairs'])
    assert result.exit_code == 0, result.output
    assert len(list((out / 'images').glob('seed*-pair.png'))) == 3
    result = CliRunner().invoke(main, ['export', '--network', trained['snapshot'], '--out',
                                       str(out / 'G.pt')])
    assert result.exit_code == 0, result.output
    exported = stylegan2_ada.load(str(out / 'G.pt'))
    assert exported['G_ema'].c_dim == DIM and f"with {out / 'G.disp.pt'}" in result.output
    side = torch.load(str(out / 'G.disp.pt'), weights_only=True)   # plain data only
    bank = stylegan2_ada.load(trained['snapshot'])['gda']['plugins'][0]['state']['bank']
    assert torch.equal(side['prior_bank'], bank) and side['infer'] == 'mixup' and side['gmm'] is None
    # The exported plain G takes raw C(x) (the centring is folded into mapping.embed, the prior
    # columns' offset into fc0) and renders what the model renders from the centred prior.
    model = generate.open_model(trained['snapshot'])
    mean, scale = model.run.plugin('disp').ns.centre
    z = torch.randn([2, model.G.z_dim], generator=torch.Generator().manual_seed(2))
    assert torch.allclose(exported['G_ema'](z, bank[:2], noise_mode='const'),
                          generate.render(model, z, (bank[:2] - mean) / scale), atol=1e-5)


def test_gmm_inference_and_the_default_extractor_name(tiny, extractor, tmp_path, monkeypatch):
    data, source = tiny
    monkeypatch.setenv('GDA_VGG16', extractor)   # 'vgg16' resolves through NVIDIA's variable
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'disp', '--disp-infer', 'gmm',
                                       '--disp-gmm-components', '2', '--iters', '1', '--snap', '1'])
    assert result.exit_code == 0, result.output
    snapshot = HP.snapshot_path(next(tmp_path.iterdir()))
    state = stylegan2_ada.load(snapshot)['gda']['plugins'][0]['state']
    assert state['extractor'] == 'vgg16' and state['gmm']['means'].shape == (2, DIM)
    model = generate.open_model(snapshot)
    mean, scale = model.run.plugin('disp').ns.centre
    c = model.default_c(64, seed=0) * scale + mean      # G takes centred priors; the GMM is in C(x)
    gmm = state['gmm']
    distance = ((c[:, None] - gmm['means'][None]) / gmm['variances'].sqrt()[None]).square().sum(2).min(1).values
    assert float(distance.mean()) < 3 * DIM    # draws sit around the components, not elsewhere


@pytest.mark.parametrize('flags,message', [
    (['--disp-extractor', '/no/such/file.pt'], "'/no/such/file.pt' is neither a detector name"),
    (['--disp-infer', 'knn'], "'knn' is not one of 'mixup', 'gmm'"),
    (['--disp-gmm-components', '0'], '--disp-gmm-components: must be positive, got 0'),
    (['--disp-extractor', 'vgg16'], 'the detector vgg16.pt'),
    (['--disp-extractor', __file__], f'{__file__} is not a TorchScript file'),
])
def test_bad_input_and_a_missing_extractor_offline_are_user_errors(tiny, tmp_path, monkeypatch,
                                                                      flags, message):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('GDA_VGG16', raising=False)
    monkeypatch.delenv('DNNLIB_CACHE_DIR', raising=False)
    from stylegan2_ada import detectors
    monkeypatch.setattr(detectors, 'URL_BASE', 'http://127.0.0.1:9/unreachable/')   # refused: offline
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path / 'runs'), '--plugin', 'disp', '--iters', '1']
                                + flags)
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'runs').exists()


def test_disp_with_a_plugin_freezing_the_conditioning_is_a_conflict(tiny, extractor, tmp_path):
    from gda_hooks import hookimpl
    from stylegan2_ada.extensions import ConflictError, FreezePolicy

    class FreezeG:
        @hookimpl
        def freeze_policy(self, run):
            return FreezePolicy(frozen=lambda name: name.startswith('G.'))

    data, source = tiny
    manager = HP.manager(('disp', disp), ('freezeg', FreezeG()))
    with pytest.raises(ConflictError, match="'disp' requires G.mapping.embed.weight to train but "
                                            "'freezeg' freezes it"):
        HP.train(tmp_path / 'runs', data, source, manager, plugins=['disp', 'freezeg'],
                 plugin_options={'disp': {'extractor': extractor}})
    assert not (tmp_path / 'runs').exists()
