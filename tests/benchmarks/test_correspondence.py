"""benchmarks/correspondence.py: the paired Noto/Twemoji sets from the shipped data, cross-style
retrieval and the correspondence share by hand with a stand-in detector, and the cross-style
positives of the correspondence encoder."""

import json
import pathlib

import numpy as np
import pytest
import torch

import correspondence as C  # by name: see conftest.py
import substitute_detector as SD

from gda_core import demo_data


class MeanColour(torch.nn.Module):
    """A stand-in detector: the image's mean colour, NVIDIA's call convention."""

    def forward(self, images, return_features=False):
        return images.float().mean(dim=(2, 3))


def flat(*colours):
    return torch.tensor(colours, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 4, 4).contiguous()


def test_shipped_pairs_hold_the_same_emoji_in_both_styles_row_by_row():
    sources, targets, names = C.shipped_pairs()
    assert sources.shape == targets.shape == (3786, 3, 32, 32) and sources.dtype == torch.uint8
    assert len(set(names)) == 3786 and names[0] == 'grinning'
    records = json.loads(pathlib.Path(demo_data.PROVENANCE).read_text())['images']
    dog = names.index('dog')
    shot = next(r for r in records if r['role'] == 'target' and r['short_name'] == 'dog')
    with open(pathlib.Path(demo_data.DIR, shot['output']), 'rb') as file:
        assert np.array_equal(targets[dog].numpy(), C._png(file.read()))
    assert not torch.equal(sources[dog], targets[dog])    # two styles, not one image twice


def test_retrieval_by_hand():
    sources = flat((250, 0, 0), (0, 250, 0), (0, 0, 250))
    targets = flat((200, 40, 0), (0, 200, 40), (200, 0, 60))
    # Cosines of the third target (magenta-red): red 0.958, blue 0.287, green 0: its own (blue) is
    # second. Blue's nearest target is still the third (0.287 > 0.196 > 0).
    scores = C.retrieval(MeanColour(), sources, targets, k=2)
    assert scores['target_to_source_top1'] == pytest.approx(2 / 3)
    assert scores['target_to_source_topk'] == pytest.approx(1.0)
    assert scores['source_to_target_top1'] == pytest.approx(1.0)


def test_correspondence_share_by_hand():
    sources = flat((250, 0, 0), (0, 250, 0), (0, 0, 250))          # Noto: red, green, blue emoji
    targets = flat((220, 30, 30), (30, 220, 30), (30, 30, 220))      # Twemoji: the same three
    metric = C.Correspondence(MeanColour(), sources, targets)
    drawn = flat((240, 10, 10), (10, 240, 10), (10, 10, 240), (240, 10, 10))   # source samples
    kept = flat((200, 20, 20), (20, 20, 200), (20, 20, 200), (30, 200, 30))    # adapted, same z
    share, distinct = metric.shares(drawn, kept)
    assert share == pytest.approx(2 / 4) and distinct == 3   # z0 and z2 kept their emoji


def test_cross_style_pairs_pull_the_paired_images_together_and_enter_the_cache_key():
    rng = np.random.RandomState(0)
    images = torch.from_numpy(rng.randint(0, 256, [8, 3, 32, 32]).astype(np.uint8))
    pairs = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]])   # unrelated noise images, "paired"
    # The correspondence encoder's views: geometry (adaptation.build_content_encoder).
    plain, _ = SD.train_encoder(images, seed=1, steps=40, batch=8, views='geometry')
    paired, _ = SD.train_encoder(images, seed=1, steps=40, batch=8, pairs=pairs, views='geometry')

    def pair_similarity(encoder):
        features = C.embed(encoder, images)
        return float((features[:4] * features[4:]).sum(1).mean())

    assert pair_similarity(paired) > pair_similarity(plain) + 0.2
    settings = dict(SD.DEFAULTS, steps=2)
    assert SD.cache_key(images, 1, settings) != SD.cache_key(images, 1, settings, pairs)
    assert SD.cache_key(images, 1, settings, pairs) != SD.cache_key(images, 1, settings, pairs.flip(0))
