"""rssa's maths against hand-computed values: SCC (eq. 3-4), DCC (eq. 5-6), the neighbourhood
U(z, r) and the latent space compression (eq. 8) with its per-entry strengths."""

import math

import pytest
import torch
import torch.nn.functional as F

from gda_plugins.rssa import correlation
from gda_plugins.rssa.compression import (CHURCH_ALPHAS, OFFICIAL_ALPHAS, LatentCompression,
                                          paper_alphas)


def feature_map(*vectors, height=1):
    """[1, C, height, W] from channel vectors listed row by row."""
    x = torch.tensor(vectors, dtype=torch.float64)           # [H*W, C]
    return x.t().reshape(1, x.shape[1], height, -1)


# ---- SCC --------------------------------------------------------------------------------------------

def test_self_correlation_is_the_cosine_of_every_position_pair():
    f = feature_map([3, 0], [1, 1], [0, -2])
    expected = torch.tensor([[1, 1 / math.sqrt(2), 0],
                             [1 / math.sqrt(2), 1, -1 / math.sqrt(2)],
                             [0, -1 / math.sqrt(2), 1]], dtype=torch.float64)
    assert torch.allclose(correlation.self_correlation(f)[0], expected)


def test_scc_of_identical_features_is_zero_and_perturbed_features_give_the_hand_value():
    source = feature_map([1, 0], [0, 1])        # C_s = [[1, 0], [0, 1]]
    target = feature_map([1, 0], [2, 0])        # C_t = [[1, 1], [1, 1]]
    assert correlation.scc_loss([source], [source.clone()]) == 0
    # Off-diagonal differences of 1: smooth-L1 (beta 1) gives 0.5 each, mean over 4 entries.
    assert correlation.scc_loss([source], [target]).item() == pytest.approx(0.25)
    assert correlation.scc_loss([source], [target], distance='l1').item() == pytest.approx(0.5)
    # Summed over layers.
    assert correlation.scc_loss([source, source], [target, target]).item() == pytest.approx(0.5)


def test_scc_is_positive_when_a_real_map_is_perturbed():
    torch.manual_seed(0)
    f = torch.randn(2, 8, 16, 16)
    assert correlation.scc_loss([f], [f + 0.3 * torch.randn_like(f)]) > 0


def test_windows_cut_a_grid_in_row_major_order():
    feat = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).reshape(2, 3, 8, 8)
    patches = correlation.windows(feat, 4, 4)
    assert patches.shape == (8, 3, 4, 4)
    expected = [feat[n, :, y:y + 4, x:x + 4] for n in range(2) for y in (0, 4) for x in (0, 4)]
    assert all(torch.equal(p, e) for p, e in zip(patches, expected))


def test_large_maps_are_pooled_and_correlated_in_four_windows_plus_the_shifted_centre():
    torch.manual_seed(0)
    feat = torch.randn(2, 5, 64, 64, dtype=torch.float64)
    grid, centre = correlation.scc_matrices(feat)
    pooled = F.adaptive_avg_pool2d(feat, 32)
    assert grid.shape == (2 * 4, 256, 256) and centre.shape == (2, 256, 256)
    top_right = correlation.self_correlation(pooled[:1, :, 0:16, 16:32])[0]
    assert torch.allclose(grid[1], top_right)
    assert torch.allclose(centre[1], correlation.self_correlation(pooled[1:, :, 8:24, 8:24])[0])
    assert len(correlation.scc_matrices(torch.randn(1, 2, 32, 32))) == 1      # whole map
    assert correlation.scc_matrices(torch.randn(1, 2, 512, 512)) == []        # skipped, as official


def checkerboard(size, channels=2):
    """[1, C, size, size]: unit e1 and e2 alternating pixel by pixel."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    odd = ((yy + xx) % 2).to(torch.float64)
    feat = torch.zeros(1, channels, size, size, dtype=torch.float64)
    feat[0, 0], feat[0, 1] = 1 - odd, odd
    return feat


def test_official_scc_hand_value_smooth_l1_normalised_before_pooling_64px_maps_only():
    # Source: e1 everywhere. Target: e1/e2 checkerboard. The official code normalises, pools 2x2
    # (target vectors (e1 + e2) / 2, squared norm 0.5) and does not re-normalise: every source
    # entry is 1, every target entry 0.5; smooth-L1 (beta 1) of 0.5 is 0.125, in the grid pass
    # and the centre pass: 0.25.
    source = torch.zeros(1, 2, 64, 64, dtype=torch.float64)
    source[0, 0] = 3.0                                   # any length: normalised first
    target = checkerboard(64)
    assert correlation.scc_loss([source], [target], official=True).item() == pytest.approx(0.25)
    # The paper preset re-normalises pooled vectors: all entries are 1 on both sides.
    assert correlation.scc_loss([source], [target]).item() == pytest.approx(0)
    # Maps below 64 px take no part in the official SCC; the paper correlates them whole (half
    # the entries of the checkerboard's matrix are 0 instead of 1: smooth-L1 0.5, mean 0.25).
    small_s, small_t = source[:, :, :32, :32], checkerboard(32)
    assert correlation.scc_loss([small_s], [small_t], official=True) is None
    assert correlation.scc_loss([small_s], [small_t]).item() == pytest.approx(0.25)
    assert correlation.scc_loss([small_s, source], [small_t, target],
                                official=True).item() == pytest.approx(0.25)


def official_scc_reference(feat_s, feat_t):
    """The official formula written out by hand for one 64..256 px layer: normalise, 2x2 average
    pool, windows of a quarter of the map (4 of them) and the centre window, dot products,
    smooth-L1 (beta 1) averaged over the entries of each pass, the two passes summed."""
    def passes(feat):
        n, c, size, _ = feat.shape
        unit = feat / feat.norm(dim=1, keepdim=True)
        pooled = unit.reshape(n, c, size // 2, 2, size // 2, 2).mean((3, 5))
        w = size // 4
        grid = [pooled[:, :, y:y + w, x:x + w] for y in (0, w) for x in (0, w)]
        centre = [pooled[:, :, w // 2:w // 2 + w, w // 2:w // 2 + w]]
        gram = lambda p: torch.einsum('ncp,ncq->npq', p.flatten(2), p.flatten(2))   # noqa: E731
        return [torch.stack([gram(p) for p in grid], 1), torch.stack([gram(p) for p in centre], 1)]
    total = 0
    for a, b in zip(passes(feat_s), passes(feat_t)):
        d = (a - b).abs()
        total = total + torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()
    return total


@pytest.mark.parametrize('size', [64, 128])
def test_official_scc_matches_the_official_formula_on_random_maps(size):
    torch.manual_seed(size)
    source = torch.randn(2, 3, size, size, dtype=torch.float64)
    target = source + 0.5 * torch.randn_like(source)
    ours = correlation.scc_loss([source], [target], official=True)
    assert ours.item() == pytest.approx(official_scc_reference(source, target).item(), rel=1e-10)
    assert ours.item() != pytest.approx(correlation.scc_loss([source], [target]).item(), rel=1e-3)


def test_official_layer_choice_scc_64_to_256_dcc_up_to_the_first_128px_map():
    sizes = [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]     # a 256 px G's layers
    assert correlation.scc_layers(sizes, official=True) == [7, 8, 9, 10, 11, 12]
    assert correlation.scc_layers(sizes) == list(range(13))
    assert correlation.dcc_layers(sizes, official=True) == list(range(10))   # breaks after b128.conv0
    assert correlation.dcc_layers(sizes + [512, 512]) == list(range(13))


# ---- DCC --------------------------------------------------------------------------------------------

def test_window_distributions_sum_to_one_and_ignore_positions_outside_the_map():
    torch.manual_seed(0)
    a, b = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    d = correlation.window_distributions(a, b, 3)
    assert d.shape == (3, 9, 5, 6)
    assert torch.allclose(d.sum(1), torch.ones(3, 5, 6))
    assert int((d[:, :, 0, 0] > 0).sum(1).max()) == 4        # a corner sees a 2x2 part of the window
    assert int((d[:, :, 2, 2] > 0).sum(1).min()) == 9        # an interior position sees all 9


def test_window_distribution_is_the_softmax_of_cosines_hand_computed():
    # One channel: f_j = +1 everywhere, f_k = +1 except -1 at (1, 1). Around (1, 1) the window
    # holds eight cosines of 1 and one of -1.
    f_j = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    f_k = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    f_k[0, 0, 1, 1] = -1
    d = correlation.window_distributions(f_j, f_k, 3)[0, :, 1, 1]
    norm = 8 * math.e + 1 / math.e
    assert d[4].item() == pytest.approx((1 / math.e) / norm)   # the centre of the window: (1, 1)
    assert d[0].item() == pytest.approx(math.e / norm)


@pytest.mark.parametrize('delta', [0, 2, -1])
def test_window_width_must_be_odd(delta):
    with pytest.raises(ValueError, match='odd'):
        correlation.window_distributions(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), delta)


def test_dcc_hand_computed():
    # Source: every vector (1, 0), so every window distribution is uniform. Target sample 1 has
    # (-1, 0) at its second position: pair (0, 1) then gives (sigma(2), sigma(-2)) at both
    # positions, pair (1, 0) stays uniform. Mean over 2 pairs x 2 positions of the L1 distance:
    # (2 * 2 * (sigma(2) - 1/2)) / 4.
    ones = feature_map([1, 0], [1, 0])
    source = torch.cat([ones, ones])
    target = torch.cat([ones, feature_map([1, 0], [-1, 0])])
    sigma = 1 / (1 + math.exp(-2))
    assert correlation.dcc_loss([source], [target], 3).item() == pytest.approx(sigma - 0.5)
    assert correlation.dcc_loss([source], [source.clone()], 3) == 0


def test_ordered_pairs_exclude_a_sample_with_itself():
    j, k = correlation.ordered_pairs(3)
    assert sorted(zip(j.tolist(), k.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def test_neighbourhood_lies_in_the_open_ball_around_its_centre():
    rng = torch.Generator().manual_seed(0)
    center = torch.randn(64, generator=rng)
    z = correlation.sample_neighbourhood(center, 500, 2.5, rng)
    assert z.shape == (501, 64) and torch.equal(z[0], center)
    distances = (z[1:] - center).norm(dim=1)
    assert distances.max() < 2.5 and distances.min() > 2.0   # uniform in 64-d: near the surface
    directions = (z[1:] - center) / distances[:, None]
    assert directions.mean(0).norm() < 0.2                    # no preferred direction


# ---- compression ------------------------------------------------------------------------------------

def test_compression_hand_computed():
    compression = LatentCompression([0.5])
    compression.set_codes(torch.tensor([[[1.0, 0.0]]]))       # A = [(1, 0)]
    # proj((3, 4)) = (3, 0), rescaled to |w| = 5: (5, 0); 0.5 * (5, 0) + 0.5 * (3, 4) = (4, 2).
    out = compression(torch.tensor([[[3.0, 4.0]]]))
    assert torch.allclose(out, torch.tensor([[[4.0, 2.0]]]))


def test_projection_onto_the_codes_is_idempotent_and_full_compression_too():
    torch.manual_seed(0)
    compression = LatentCompression([1.0, 0.4, 1.0])
    compression.set_codes(torch.randn(4, 3, 8))
    ws = torch.randn(5, 3, 8)
    proj = compression.project(ws)
    assert torch.allclose(compression.project(proj), proj, atol=1e-5)
    once = compression(ws)
    twice = compression(once)
    assert torch.allclose(twice[:, [0, 2]], once[:, [0, 2]], atol=1e-5)
    assert torch.allclose(once.norm(dim=2)[:, [0, 2]], ws.norm(dim=2)[:, [0, 2]], atol=1e-5)


def test_alpha_zero_is_exactly_the_identity():
    torch.manual_seed(0)
    compression = LatentCompression([0.0, 0.7])
    compression.set_codes(torch.randn(3, 2, 6))
    ws = torch.randn(4, 2, 6)
    out = compression(ws)
    assert torch.equal(out[:, 0], ws[:, 0]) and not torch.allclose(out[:, 1], ws[:, 1])
    all_zero = LatentCompression([0.0, 0.0])
    all_zero.set_codes(torch.randn(3, 2, 6))
    assert torch.equal(all_zero(ws), ws)


def test_codes_must_match_the_number_of_entries():
    with pytest.raises(ValueError, match=r'codes must be \[n, 2, w_dim\]'):
        LatentCompression([0.1, 0.2]).set_codes(torch.randn(3, 4, 6))
    with pytest.raises(RuntimeError, match='before its codes were set'):
        LatentCompression([0.1])(torch.randn(1, 1, 2))


def test_paper_alphas_are_the_official_values_for_14_entries_and_follow_depth_otherwise():
    assert paper_alphas(14) == list(OFFICIAL_ALPHAS)
    stretched = paper_alphas(27)                 # depth l/26: even entries hit official points
    assert stretched[::2] == pytest.approx(list(OFFICIAL_ALPHAS))
    assert stretched[5] == pytest.approx((OFFICIAL_ALPHAS[2] + OFFICIAL_ALPHAS[3]) / 2)
    # 16 px, 6 entries at depths 0, .2, .4, .6, .8, 1 = official positions 0, 2.6, 5.2, 7.8, 10.4,
    # 13: 0; 0.6 * .05; .05; .45; .65 + 0.4 * (.85 - .65); .85.
    assert paper_alphas(6) == pytest.approx([0, 0.03, 0.05, 0.45, 0.73, 0.85])


def test_church_alphas_are_the_official_church_module_values():
    from gda_plugins.rssa import alphas_for
    church = [0, 0, 0, .05, .05, .05, .05, .35, .35, .55, .55, .75, .75, .75]
    assert list(CHURCH_ALPHAS) == church
    assert alphas_for({'alphas': 'church'}, 14) == church
    assert alphas_for({'alphas': 'paper'}, 14) == list(OFFICIAL_ALPHAS)
    # 6 entries (16 px) at official positions 0, 2.6, 5.2, 7.8, 10.4, 13, as for the face values.
    assert alphas_for({'alphas': 'church'}, 6) == pytest.approx([0, 0.03, 0.05, 0.35, 0.63, 0.75])
