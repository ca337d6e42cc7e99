"""SCS: 1 for identical structure, higher for a slightly perturbed copy than for unrelated images;
the Sobel detector ignores contrast; HED loads pytorch-hed's weight layout."""

import pytest
import torch

from gda_core.metrics import evaluate
from gda_core.metrics.edges import HED, edge_function, load_hed, sobel_edges
from gda_core.metrics.scs import scs_of_pairs, structural_consistency
from stylegan2_ada.errors import UserError


def _shapes(seed, count=4, size=32):
    """[-1, 1] images of random rectangles on a flat background."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.full([count, 3, size, size], -0.6)
    for image in images:
        for _ in range(3):
            x0, y0 = torch.randint(0, size - 8, [2], generator=generator).tolist()
            w, h = torch.randint(4, 12, [2], generator=generator).tolist()
            image[:, y0:y0 + h, x0:x0 + w] = torch.rand([3, 1, 1], generator=generator) * 1.6 - 0.8
    return images


def test_structural_consistency_formula():
    a = torch.tensor([[1.0, 0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 0.0]])
    assert structural_consistency(a, a).item() == pytest.approx(1.0)
    assert structural_consistency(a, b).item() == pytest.approx(2 * 1 / (5 + 2))
    assert structural_consistency(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 1.0
    assert structural_consistency(a, torch.zeros(1, 3)).item() == 0.0


def test_sobel_scs_identical_perturbed_unrelated():
    edges = edge_function('sobel')
    images = _shapes(0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(9)) * 0.03
    identical = structural_consistency(edges(images), edges(images))
    perturbed = structural_consistency(edges(images), edges(images + noise))
    unrelated = structural_consistency(edges(images), edges(_shapes(1)))
    assert torch.allclose(identical, torch.ones(4, dtype=torch.float64))
    assert (perturbed < 1).all() and (unrelated < perturbed).all()


def test_sobel_maps_ignore_contrast_and_lie_in_unit_range():
    images = (_shapes(2) + 1) / 2
    maps = sobel_edges(images)
    assert maps.shape == (4, 1, 32, 32) and maps.min() >= 0 and maps.amax(dim=(1, 2, 3)).allclose(torch.ones(4))
    faint = sobel_edges(images * 0.3 + 0.2)
    assert structural_consistency(maps, faint).allclose(torch.ones(4, dtype=torch.float64))


def test_scs_of_pairs_averages_over_latents(make_generator):
    G, other = make_generator(0), make_generator(1)

    def pairs_of(source, adapted):
        def pairs(z):
            c = torch.zeros([len(z), 0])
            return source(z, c, noise_mode='const'), adapted(z, c, noise_mode='const')
        return pairs
    edges = edge_function('sobel')
    same, spread = scs_of_pairs(pairs_of(G, G), edges, G.z_dim, 20, batch=8)
    assert same == pytest.approx(1.0) and spread == pytest.approx(0.0, abs=1e-12)
    different, _ = scs_of_pairs(pairs_of(G, other), edges, G.z_dim, 20, batch=8)
    assert different < 0.9
    assert scs_of_pairs(pairs_of(G, other), edges, G.z_dim, 20, batch=8)[0] == different   # seeded z


def test_scs_through_evaluate_needs_a_source(make_generator):
    G = make_generator(0)
    record = evaluate(['scs'], G, source_G=G, num_gen=10, batch=5)['scs']
    assert record['results']['scs'] == pytest.approx(1.0)
    assert record['protocol'] == dict(num_pairs=10, edges='sobel', seed=0, truncation_psi=1.0, noise_mode='const')
    with pytest.raises(UserError, match='source'):
        evaluate(['scs'], G, num_gen=10)


def test_hed_loads_pytorch_hed_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = {key.replace('net', 'module', 1): value for key, value in HED().state_dict().items()}
    path = tmp_path / 'network-bsds500.pytorch'
    torch.save(state, path)
    monkeypatch.setenv('GDA_HED', str(path))
    model = load_hed()
    images = torch.rand(2, 3, 16, 16) * 255
    maps = model(images)
    assert maps.shape == (2, 1, 16, 16) and ((maps > 0) & (maps < 1)).all()
    edges = edge_function('hed')(images / 127.5 - 1)
    assert edges.shape == (2, 1, 16, 16)

    del state['moduleScoreOne.weight']
    torch.save(state, tmp_path / 'broken.pytorch')
    with pytest.raises(UserError, match='netScoreOne.weight'):
        load_hed(tmp_path / 'broken.pytorch')
    monkeypatch.delenv('GDA_HED')
    with pytest.raises(UserError, match='GDA_HED'):
        edge_function('hed')
