"""The shared Fisher estimator (two objectives on one graph) and the filter ranking adam and rick
take from the official code, against hand-computed cases."""

import torch

from gda_core import filters
from gda_core.fisher import per_sample_fisher, percentile

from gda_testkit import plugins as HP


def test_two_objectives_on_one_graph_get_their_own_per_sample_fisher():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0], requires_grad=True)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])

    def objectives(batch):
        shared = x[batch:batch + 1] @ a                 # one sample per batch: 1 then 4
        return [(shared * 2, [a]), (shared * b, [b])]
    (fa,), (fb,) = per_sample_fisher(objectives, 2)
    # d(2 x.a)/da = 2x: squares [4, 0] and [0, 16]; d(x.a b)/db = x.a: squares 1 and 16
    assert torch.allclose(fa, torch.tensor([2.0, 8.0]))
    assert torch.allclose(fb, torch.tensor([8.5]))


def test_percentile_pools_layers_like_numpy():
    pooled = [torch.tensor([0.1, 0.5]), torch.tensor([0.9, 0.3, 0.7])]
    # sorted 0.1 0.3 0.5 0.7 0.9; position 0.4 * 4 = 1.6 -> 0.3 + 0.6 * 0.2
    assert abs(percentile(pooled, 40) - 0.42) < 1e-6
    assert abs(percentile(pooled, 10) - 0.18) < 1e-6


def test_importance_averages_the_bias_only_where_the_official_code_counts_it():
    weight_fisher = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    row = filters.row_mean(weight_fisher)
    assert row.tolist() == [2.0, 0.0]
    assert filters.importance(row).tolist() == [2.0, 0.0]
    assert filters.importance(row, torch.tensor([2.0, 4.0])).tolist() == [2.0, 2.0]


def test_units_follow_the_official_pools_in_nvidia_names():
    G, D = HP.tiny_networks()
    units = filters.units(G, D)
    pools = {u.layer: u.pool for u in units}
    assert pools == {'G.synthesis.b8.conv0': 'g_conv', 'G.synthesis.b8.conv0.affine': 'g_fc',
                     'G.synthesis.b8.conv1': 'g_conv', 'G.synthesis.b8.conv1.affine': 'g_fc',
                     'G.synthesis.b16.conv0': 'g_conv', 'G.synthesis.b16.conv0.affine': 'g_fc',
                     'G.synthesis.b16.conv1': 'g_conv', 'G.synthesis.b16.conv1.affine': 'g_fc',
                     'D.b16.conv0': 'd_conv', 'D.b16.conv1': 'd_conv', 'D.b16.skip': 'd_conv',
                     'D.b8.conv0': 'd_conv', 'D.b8.conv1': 'd_conv', 'D.b8.skip': 'd_conv'}
    biases = {u.layer: u.bias for u in units}
    assert biases['G.synthesis.b8.conv0'] is None and biases['D.b8.skip'] is None
    assert biases['D.b8.conv0'] == 'D.b8.conv0.bias'
    assert biases['G.synthesis.b8.conv0.affine'] == 'G.synthesis.b8.conv0.affine.bias'
