"""diffaugment: the three ops as the official code defines them, per sample, differentiable, wired
into every D pass by the plugin."""

import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import main
from gda_plugins.diffaugment import augment
from gda_plugins import diffaugment


def distinct_images(n=16, c=3, h=16, w=16):
    """Images whose pixels are all different and non-zero, so zeros can only come from filling."""
    return (torch.arange(n * c * h * w, dtype=torch.float64) + 1).reshape(n, c, h, w)


def shifted(image, dy, dx, pad=2):
    """out[y, x] = image[y + dy, x + dx], zero outside (|dy|, |dx| <= pad)."""
    h, w = image.shape[-2:]
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    return padded[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w]


def test_translation_shifts_whole_pixels_within_an_eighth_and_fills_with_zero():
    torch.manual_seed(0)
    images = distinct_images(n=24)
    out = augment.translation(images)
    shifts = set()
    for image, result in zip(images, out):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(result, shifted(image, dy, dx))]
        assert len(matches) == 1   # round(16 / 8) = 2 pixels at most, each way
        shifts.add(matches[0])
    assert len(shifts) > 5         # drawn per sample


def test_cutout_zeroes_one_half_size_square_clipped_at_the_border():
    torch.manual_seed(0)
    out = augment.cutout(torch.ones(64, 3, 16, 16))
    areas = []
    for image in out:
        holes = (image == 0)
        assert torch.equal(holes[0], holes[1]) and torch.equal(holes[0], holes[2])   # all channels
        rows, cols = holes[0].any(1).nonzero().flatten(), holes[0].any(0).nonzero().flatten()
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert holes[0].sum() == height * width            # one rectangle
        assert height <= 8 and width <= 8 and height >= 4 and width >= 4   # 16 / 2, centre inside
        areas.append(int(height * width))
    assert 64 in areas and min(areas) < 64                 # whole squares and clipped ones


def test_color_applies_brightness_then_saturation_then_contrast(monkeypatch):
    draws = iter([0.25, 2.0, 0.5])
    monkeypatch.setattr(augment, '_uniform', lambda x, low, high: torch.full(
        [x.shape[0], 1, 1, 1], next(draws), dtype=x.dtype))
    images = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    expected = images + 0.25
    mean = expected.mean(dim=1, keepdim=True)
    expected = (expected - mean) * 2.0 + mean
    mean = expected.mean(dim=[1, 2, 3], keepdim=True)
    expected = (expected - mean) * 0.5 + mean
    assert torch.allclose(augment.color(images), expected)


def test_color_draws_stay_in_the_official_ranges():
    torch.manual_seed(0)
    gray = torch.zeros(256, 3, 4, 4)
    out = augment.color(gray)   # brightness only shows on a flat image
    shifts = out[:, 0, 0, 0]
    assert shifts.min() >= -0.5 and shifts.max() <= 0.5 and shifts.std() > 0.2


@pytest.mark.parametrize('policy', ['color', 'translation', 'cutout', 'color,translation,cutout'])
def test_every_op_is_differentiable(policy):
    chain = augment.DiffAugment(policy)

    def seeded(x):
        torch.manual_seed(1)   # the same draws on every gradcheck evaluation
        return chain(x, None)
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (x,))


def test_policy_names_are_checked():
    assert augment.parse_policy(' color, cutout ') == ('color', 'cutout')
    with pytest.raises(ValueError, match='unknown DiffAugment op\\(s\\) zoom'):
        augment.parse_policy('color,zoom')


def test_the_plugin_augments_every_d_pass_in_policy_order(tiny, tmp_path, monkeypatch):
    calls = []
    real_call = augment.DiffAugment.__call__

    def recording(self, img, it=None):
        calls.append((it.phase, [op.__name__ for op in self.ops]))
        return real_call(self, img, it)
    monkeypatch.setattr(augment.DiffAugment, '__call__', recording)
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'diffaugment',
                                       '--diffaugment-policy', 'cutout,color', '--iters', '1'])
    assert result.exit_code == 0, result.output
    assert {phase for phase, _ in calls} == {'Gmain', 'Dmain', 'Dreg'}
    assert all(ops == ['cutout', 'color'] for _, ops in calls)


def test_a_bad_policy_is_a_usage_error(tiny, tmp_path):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'diffaugment',
                                       '--diffaugment-policy', 'color,zoom', '--iters', '1'])
    assert result.exit_code == 2
    assert '--diffaugment-policy: unknown DiffAugment op(s) zoom' in result.output


def test_it_proposes_no_core_defaults():
    # So that it composes with any method's proposals (docs/hooks.md).
    assert not hasattr(diffaugment, 'propose_defaults')


def test_the_torch_free_policy_names_are_exactly_the_ops():
    from gda_plugins.diffaugment import policy
    assert tuple(augment.OPS) == policy.POLICIES
    with pytest.raises(ValueError, match='choose from color, translation, cutout'):
        policy.parse_policy('color,zoom')
