"""The run context's host services: anchors, plugin views, raw-image dataset view, rendering."""

import numpy as np
import pytest
import torch

from gda_core.datasets import views
from gda_core.run_context import RunContext
from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import ConflictError

from gda_testkit import plugins as HP


class Images:
    def __len__(self):
        return 10


def context(seed=0, plugins=('a', 'b')):
    G, D = HP.tiny_networks()
    run = RunContext('train', G=G, D=D, dataset=Images(), seed=seed)
    for name in plugins:
        run.add_plugin(name, {'weight': 1.5})
    return run


def _drawn(seed):
    run = context(seed=seed)
    run.for_plugin('a').request_anchors()
    return run.draw_anchors(z_dim=16)


def test_anchors_are_drawn_once_from_the_seed_whoever_asks():
    run = context()
    run.for_plugin('a').request_anchors()
    first = run.draw_anchors(z_dim=16)
    assert first.shape == (10, 16)     # n None: the number of target images
    other = context(plugins=('c', 'a', 'b'))
    other.for_plugin('b').request_anchors(10)
    other.for_plugin('c').request_anchors()
    assert torch.equal(other.draw_anchors(z_dim=16), first)   # other plugins change nothing
    assert not torch.equal(_drawn(seed=1), first)                # the run seed does


def test_disagreeing_anchor_counts_conflict_and_late_requests_fail():
    run = context()
    run.for_plugin('a').request_anchors(4)
    run.for_plugin('b').request_anchors()
    with pytest.raises(ConflictError, match="'a' want 4; 'b' want 10"):
        run.anchor_count()
    run = context()
    assert run.draw_anchors(16) is None and run.anchor_state() is None   # nobody asked
    with pytest.raises(UserError, match='request_anchors'):
        run.anchors
    run.for_plugin('a').request_anchors(2)
    run.draw_anchors(16)
    with pytest.raises(UserError, match='after they were drawn'):
        run.for_plugin('b').request_anchors(2)


def test_near_anchors_perturb_anchors_from_the_iteration_rng():
    run = context()
    run.for_plugin('a').request_anchors(3)
    anchors = run.draw_anchors(16)
    near = run.near_anchors(50, 0.1, torch.Generator().manual_seed(0))
    again = run.near_anchors(50, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(near, again)
    distance = (near[:, None] - anchors[None]).norm(dim=2).min(dim=1).values
    assert distance.max() < 0.1 * 16 ** 0.5 * 3   # each sample sits near one of the anchors


def test_each_plugin_sees_its_own_options_and_namespace():
    run = context()
    a, b = run.for_plugin('a'), run.for_plugin('b')
    a.ns.cache = 1
    assert not hasattr(b.ns, 'cache') and run.plugin('a').ns.cache == 1
    assert a.options.weight == a.options['weight'] == 1.5 and a.name == 'a'
    assert a.G is run.G and a.mode == 'train'
    with pytest.raises(AttributeError, match='read-only'):
        a.G = None
    with pytest.raises(AttributeError, match="no option 'depth'"):
        a.options.depth
    with pytest.raises(UserError, match="plugin 'z' is not active in this run"):
        run.plugin('z')


def test_synthesize_is_a_setup_time_service():
    run = context()
    with pytest.raises(UserError, match='from setup on'):
        run.synthesize('G', torch.zeros(1, 16))
    with pytest.raises(ValueError, match="net must be 'source', 'G' or 'G_ema'"):
        run.synthesize('D', torch.zeros(1, 16))


def test_plugins_see_raw_images_before_mirroring(tmp_path):
    folder = HP.write_images(tmp_path / 'data', count=3)
    dataset = ImageFolderDataset(folder, xflip=True)
    items, raw = views(dataset, mirrored=True)
    assert len(items) == 6 and len(raw) == 3
    assert [items.raw_index(i) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(raw.raw_image(1), dataset[1][0])
    assert np.array_equal(raw.raw_image(1)[:, :, ::-1], dataset[4][0])   # item 4 is image 1 flipped
    with pytest.raises(IndexError):
        raw.raw_image(3)
