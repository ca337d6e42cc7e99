"""Intra-cluster LPIPS: nearest-training-image assignment, 0 for duplicates, > 0 for variety."""

import pytest
import torch

from gda_core.metrics import evaluate
from gda_core.metrics.intra_lpips import assign, intra_cluster_lpips
from stylegan2_ada.errors import UserError


@pytest.fixture(scope='module')
def vgg(standins):
    return standins.script(standins.VGG16())


def _training_images(count=3, size=16):
    """Distinct smooth patterns (stripes of different orientation and colour), uint8."""
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing='ij')
    images = []
    for i in range(count):
        wave = torch.sin((x * (i + 1) + y * (count - i)) / 3)
        colour = torch.tensor([1.0, 0.5 + 0.2 * i, 1.0 - 0.3 * i]).view(3, 1, 1)
        images.append(((wave * 0.5 + 0.5) * colour * 255).round().to(torch.uint8))
    return torch.stack(images)


def _noisy(images, copies, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    base = images.repeat_interleave(copies, 0).float()
    noise = torch.randn(base.shape, generator=generator) * scale
    return (base + noise).clamp(0, 255).to(torch.uint8)


def test_duplicates_of_the_training_images_score_zero(vgg):
    centres = _training_images()
    score, used = intra_cluster_lpips(vgg, [centres.repeat(4, 1, 1, 1)], centres)
    assert score == 0.0 and used == 3


def test_each_image_joins_its_nearest_training_image_and_variety_scores_above_zero(vgg):
    centres = _training_images()
    generated = _noisy(centres, 6, 12.0, seed=0)[torch.randperm(18, generator=torch.Generator().manual_seed(1))]
    clusters = assign(vgg, generated.split(5), centres)
    for cluster, members in clusters.items():
        expected = centres[cluster].float()
        assert len(members) == 6
        assert all((member.float() - expected).abs().mean() < 15 for member in members)
    score, used = intra_cluster_lpips(vgg, generated.split(5), centres)
    more, _ = intra_cluster_lpips(vgg, _noisy(centres, 6, 40.0, seed=0).split(5), centres)
    assert 0 < score < more and used == 3


def test_at_most_50_members_per_cluster(vgg):
    centres = _training_images(2)
    clusters = assign(vgg, _noisy(centres, 60, 5.0, seed=2).split(32), centres)
    assert [len(members) for members in clusters.values()] == [50, 50]


def test_clusters_need_two_members_and_matching_resolution(vgg):
    centres = _training_images()
    with pytest.raises(UserError, match='two generated images'):
        intra_cluster_lpips(vgg, [centres], centres)   # one member each
    with pytest.raises(UserError, match='--resolution 8'):
        intra_cluster_lpips(vgg, [centres[:, :, :8, :8]], centres)


def test_intra_lpips_through_evaluate(make_generator, image_folder, detector_files, tmp_path):
    centres = _training_images(2)
    train = image_folder(tmp_path / 'train', centres)
    copies = centres.float() / 127.5 - 1

    def copying_generator(z, c):   # memorises: every image is one of the training images
        return copies[(z[:, 0] > 0).long()]
    G = make_generator()
    kwargs = dict(data=train, num_gen=16, batch=8, detector_paths=detector_files)
    record = evaluate(['intra_lpips'], G, generate=copying_generator, **kwargs)['intra_lpips']
    assert record['results']['intra_lpips'] == 0.0
    assert record['protocol']['clusters'] == 2 and record['protocol']['train_data'] == train
    varied = evaluate(['intra_lpips'], G, **kwargs)['intra_lpips']
    assert varied['results']['intra_lpips'] > 0.01
