"""ADA: the differentiable, non-leaking augmentation pipeline and the heuristic that tunes its strength.

Matches NVIDIA's training/augment.py (same constructor kwargs, buffers `p`, `Hz_geom`, `Hz_fbank`,
same formulas and the same order of random draws), so the `augment_pipe` record of an NVIDIA
pickle rebuilds into `AugmentPipe` and a given torch seed augments a batch the same way.

Every augmentation is applied to each image independently with probability `multiplier * p`.
Geometric ones are composed into one 2-D matrix and resampled once (reflect padding, 2x wavelet
upsampling, bilinear grid_sample, wavelet downsampling), which keeps blur, aliasing and border
artefacts (things G would learn to imitate) small; colour ones are composed into one 4x4 matrix.
Everything is differentiable to second order because R1 differentiates D(augment(x)) twice.
"""

import math

import numpy as np
import torch

from .ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d
from .ops.fir_matrix import apply_separable, reflect_matrix, upfirdn_matrix
from .augment_specs import AUGPIPE_SPECS  # noqa: F401  (re-exported: NVIDIA's --augpipe presets)
from .persistence import persistent_class

# Orthogonal wavelet low-pass filters (Daubechies' symlets). sym6 is the resampling filter of the
# geometric augmentations; sym2 seeds the image-space filter bank.
_SYM2 = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
_SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
         0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
         -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]

def _filter_bank(num_bands=4):
    """Rows are FIR filters splitting an image into octave bands; they sum to a unit impulse.

    Band 0 is the lowest octave, band i the high-pass half of octave i. Built by repeating
    (dilate by 2, low-pass) and adding the high-pass response to band i at level i, the same
    construction (and numbers) as NVIDIA's.
    """
    lo = np.asarray(_SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2  # power response of the low-pass half: lo2 + hi2 = impulse
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(num_bands, 1)
    for band in range(1, num_bands):
        dilated = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in dilated])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return torch.as_tensor(bank, dtype=torch.float32)


def _matrix(rows, like):
    """Batched matrix [*like.shape, R, C]; entries are tensors shaped like `like` or numbers."""
    entries = [e if torch.is_tensor(e) else torch.full_like(like, e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(*like.shape, len(rows), len(rows[0]))


def _translate2d(tx, ty):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(sx, sy):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _translate3d(t):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def _scale3d(s):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def _rotate3d(v, theta):
    """Rotation by theta about the unit axis v (Rodrigues), homogeneous 4x4."""
    x, y, z = v[0], v[1], v[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([
        [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
        [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
        [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
        [0, 0, 0, 1]], theta)


def _gate(value, identity, prob, shape):
    """Keep each image's drawn value with probability `prob`, else the do-nothing value."""
    keep = torch.rand(shape, device=value.device) < prob
    return torch.where(keep, value, torch.full_like(value, identity))


def _percentile_normal(debug, std):
    """The debug_percentile quantile of N(0, std^2)."""
    return torch.erfinv(debug * 2 - 1) * std


def _fixed(like, value):
    """`like` with every entry replaced by the (0-dim tensor) value, for debug_percentile."""
    return torch.zeros_like(like) + value


def _const2d(values, device):
    """A fixed (unbatched) 3x3 matrix, for the coordinate-frame changes of the resampling."""
    return torch.tensor(values, dtype=torch.float32, device=device)


@persistent_class
class AugmentPipe(torch.nn.Module):
    """NVIDIA's ADA augmentation pipeline. Every multiplier defaults to 0 (off); `p` scales them all.

    Multipliers are probabilities per image relative to `p`; `*_std` are standard deviations (log2
    ones for scales), `*_max` ranges (1 = full circle for rotations). `p` starts at 1 as in
    NVIDIA's code; the training loop sets it (0 for ADA, which then tunes it).
    """

    def __init__(self,
                 xflip=0, rotate90=0, xint=0, xint_max=0.125,
                 scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2,
                 xfrac_std=0.125,
                 brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0, brightness_std=0.2,
                 contrast_std=0.5, hue_max=1, saturation_std=1,
                 imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1,
                 noise=0, cutout=0, noise_std=0.1, cutout_size=0.5):
        super().__init__()
        self.register_buffer('p', torch.ones([]))
        # Pixel blitting.
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)
        # General geometric transformations.
        self.scale, self.rotate = float(scale), float(rotate)
        self.aniso, self.xfrac = float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        # Colour transformations.
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        # Image-space filtering.
        self.imgfilter, self.imgfilter_std = float(imgfilter), float(imgfilter_std)
        self.imgfilter_bands = list(imgfilter_bands)
        # Image-space corruptions.
        self.noise, self.cutout = float(noise), float(cutout)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)

        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(_SYM6))
        self.register_buffer('Hz_fbank', _filter_bank())
        if len(self.imgfilter_bands) != self.Hz_fbank.shape[0]:
            raise ValueError(f'imgfilter_bands needs {self.Hz_fbank.shape[0]} entries, '
                             f'got {len(self.imgfilter_bands)}')

    def forward(self, images, debug_percentile=None):
        """Augment images [N, C, H, W] (C = 1 or 3 when colour augmentations are on).

        debug_percentile in [0, 1) replaces every random parameter by that percentile of its
        distribution and applies every enabled augmentation (NVIDIA's visual check; additive
        noise stays random). With p = 0 and no debug_percentile the images come back unchanged;
        NVIDIA's code would still resample them through the (near-identity) geometric path.
        """
        if images.ndim != 4:
            raise ValueError(f'expected images [N, C, H, W], got shape {list(images.shape)}')
        if debug_percentile is None and not bool(self.p > 0):
            return images
        if debug_percentile is not None:
            debug_percentile = torch.as_tensor(debug_percentile, dtype=torch.float32, device=images.device)
        images = self._geometric(images, debug_percentile)
        images = self._color(images, debug_percentile)
        if self.imgfilter > 0:
            images = self._filter(images, debug_percentile)
        if self.noise > 0:
            images = self._noise(images, debug_percentile)
        if self.cutout > 0:
            images = self._cutout(images, debug_percentile)
        return images

    def _geometric(self, images, debug):
        n, _, h, w = images.shape
        device = images.device
        if not any(m > 0 for m in (self.xflip, self.rotate90, self.xint, self.scale, self.rotate,
                                   self.aniso, self.xfrac)):
            return images

        def uniform(shape=(n,)):
            return torch.rand(shape, device=device)

        def normal(shape=(n,)):
            return torch.randn(shape, device=device)

        # G_inv maps output pixel coordinates (origin at the image centre) to input coordinates,
        # so each step right-multiplies the inverse of its transform.
        G_inv = torch.eye(3, device=device)

        if self.xflip > 0:
            i = _gate(torch.floor(uniform() * 2), 0, self.xflip * self.p, [n])
            if debug is not None:
                i = _fixed(i, torch.floor(debug * 2))
            G_inv = G_inv @ _scale2d(1 / (1 - 2 * i), torch.ones_like(i))

        if self.rotate90 > 0:
            i = _gate(torch.floor(uniform() * 4), 0, self.rotate90 * self.p, [n])
            if debug is not None:
                i = _fixed(i, torch.floor(debug * 4))
            G_inv = G_inv @ _rotate2d(math.pi / 2 * i)

        if self.xint > 0:
            t = _gate((uniform([n, 2]) * 2 - 1) * self.xint_max, 0, self.xint * self.p, [n, 1])
            if debug is not None:
                t = _fixed(t, (debug * 2 - 1) * self.xint_max)
            G_inv = G_inv @ _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))

        if self.scale > 0:
            s = _gate(torch.exp2(normal() * self.scale_std), 1, self.scale * self.p, [n])
            if debug is not None:
                s = _fixed(s, torch.exp2(_percentile_normal(debug, self.scale_std)))
            G_inv = G_inv @ _scale2d(1 / s, 1 / s)

        # Rotation is split into a pre- and a post-rotation around the anisotropic scaling (so
        # the stretch axis is random too), each with p_rot such that P(pre or post) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = _gate((uniform() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot, [n])
            if debug is not None:
                theta = _fixed(theta, (debug * 2 - 1) * math.pi * self.rotate_max)
            G_inv = G_inv @ _rotate2d(theta)

        if self.aniso > 0:
            s = _gate(torch.exp2(normal() * self.aniso_std), 1, self.aniso * self.p, [n])
            if debug is not None:
                s = _fixed(s, torch.exp2(_percentile_normal(debug, self.aniso_std)))
            G_inv = G_inv @ _scale2d(1 / s, s)

        if self.rotate > 0:
            theta = _gate((uniform() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot, [n])
            if debug is not None:
                theta = torch.zeros_like(theta)
            G_inv = G_inv @ _rotate2d(theta)

        if self.xfrac > 0:
            t = _gate(normal([n, 2]) * self.xfrac_std, 0, self.xfrac * self.p, [n, 1])
            if debug is not None:
                t = _fixed(t, _percentile_normal(debug, self.xfrac_std))
            G_inv = G_inv @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)

        return self._resample(images, G_inv)

    def _resample(self, images, G_inv):
        """Apply the inverse transform G_inv [N, 3, 3] without aliasing or border leaks."""
        n, c, h, w = images.shape
        device = images.device
        cx, cy = (w - 1) / 2, (h - 1) / 2
        Hz_pad = self.Hz_geom.shape[0] // 4

        # Reflect-pad just enough to cover where the output corners come from, plus filter support.
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                               dtype=torch.float32, device=device)
        src = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * corner]
        margin = torch.cat([-src, src]).max(dim=1).values  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([Hz_pad * 2 - cx, Hz_pad * 2 - cy] * 2, device=device)
        margin = margin.clamp(min=0)
        margin = margin.minimum(torch.tensor([w - 1, h - 1] * 2, dtype=torch.float32, device=device))
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().to(torch.int32))
        G_inv = _const2d([[1, 0, (mx0 - mx1) / 2], [0, 1, (my0 - my1) / 2], [0, 0, 1]], device) @ G_inv

        # Upsample 2x; coordinates double and the even-length filter shifts pixel centres by 1/2.
        # Padding and upsampling are one matrix per axis: the padded size changes with every
        # batch, and matmul, unlike convolution, needs no new kernels per size.
        images = apply_separable(images, self._pad_upsample_matrix(h, my0, my1, images.dtype),
                                 self._pad_upsample_matrix(w, mx0, mx1, images.dtype))
        up = _const2d([[2, 0, 0], [0, 2, 0], [0, 0, 1]], device)
        up_inv = _const2d([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]], device)
        G_inv = up @ G_inv @ up_inv
        shift = _const2d([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], device)
        shift_inv = _const2d([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], device)
        G_inv = shift @ G_inv @ shift_inv

        # Resample into an output with Hz_pad pixels of margin (at the original scale) per side,
        # expressing G_inv in the [-1, 1] coordinates of affine_grid.
        out_h, out_w = (h + Hz_pad * 2) * 2, (w + Hz_pad * 2) * 2
        to_norm = _const2d([[2 / images.shape[3], 0, 0], [0, 2 / images.shape[2], 0], [0, 0, 1]], device)
        from_norm = _const2d([[out_w / 2, 0, 0], [0, out_h / 2, 0], [0, 0, 1]], device)
        G_inv = to_norm @ G_inv @ from_norm
        grid = torch.nn.functional.affine_grid(G_inv[:, :2, :], [n, c, out_h, out_w], align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)

        # Downsample with the time-reversed filter (orthogonal wavelet: identity round trip), crop.
        return apply_separable(images, self._crop_downsample_matrix(out_h, Hz_pad * 2, images.dtype),
                               self._crop_downsample_matrix(out_w, Hz_pad * 2, images.dtype))

    def _pad_upsample_matrix(self, size, pad0, pad1, dtype):
        """One axis of reflect-pad by (pad0, pad1) then upfirdn2d.upsample2d(up=2, Hz_geom)."""
        taps = self.Hz_geom.shape[0]
        up = upfirdn_matrix(self.Hz_geom, size + pad0 + pad1, up=2, pad0=(taps + 1) // 2,
                            pad1=(taps - 2) // 2, gain=2)
        return up.to(dtype) @ reflect_matrix(size, pad0, pad1, dtype, self.Hz_geom.device)

    def _crop_downsample_matrix(self, size, crop, dtype):
        """One axis of upfirdn2d.downsample2d(down=2, padding=-crop, flip_filter=True)."""
        taps = self.Hz_geom.shape[0]
        return upfirdn_matrix(self.Hz_geom, size, down=2, pad0=(taps - 1) // 2 - crop,
                              pad1=(taps - 2) // 2 - crop, flip_filter=True).to(dtype)

    def _color(self, images, debug):
        n, c, h, w = images.shape
        device = images.device
        I_4 = torch.eye(4, device=device)
        C = I_4  # C @ [r, g, b, 1] gives the output colour
        enabled = False

        if self.brightness > 0:
            b = _gate(torch.randn([n], device=device) * self.brightness_std, 0,
                      self.brightness * self.p, [n])
            if debug is not None:
                b = _fixed(b, _percentile_normal(debug, self.brightness_std))
            C = _translate3d(b) @ C
            enabled = True

        if self.contrast > 0:
            s = _gate(torch.exp2(torch.randn([n], device=device) * self.contrast_std), 1,
                      self.contrast * self.p, [n])
            if debug is not None:
                s = _fixed(s, torch.exp2(_percentile_normal(debug, self.contrast_std)))
            C = _scale3d(s) @ C
            enabled = True

        # Luma axis: the grey diagonal (plain channel mean, as NVIDIA).
        v = torch.tensor(np.asarray([1, 1, 1, 0]) / np.sqrt(3), dtype=torch.float32, device=device)
        vv = torch.outer(v, v)

        if self.lumaflip > 0:
            i = _gate(torch.floor(torch.rand([n, 1, 1], device=device) * 2), 0,
                      self.lumaflip * self.p, [n, 1, 1])
            if debug is not None:
                i = _fixed(i, torch.floor(debug * 2))
            C = (I_4 - 2 * vv * i) @ C  # Householder reflection: negate luma, keep chroma
            enabled = True

        if self.hue > 0 and c > 1:
            theta = _gate((torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max, 0,
                          self.hue * self.p, [n])
            if debug is not None:
                theta = _fixed(theta, (debug * 2 - 1) * math.pi * self.hue_max)
            C = _rotate3d(v, theta) @ C
            enabled = True

        if self.saturation > 0 and c > 1:
            s = _gate(torch.exp2(torch.randn([n, 1, 1], device=device) * self.saturation_std), 1,
                      self.saturation * self.p, [n, 1, 1])
            if debug is not None:
                s = _fixed(s, torch.exp2(_percentile_normal(debug, self.saturation_std)))
            C = (vv + (I_4 - vv) * s) @ C  # scale chroma, keep luma
            enabled = True

        if not enabled:
            return images
        images = images.reshape(n, c, h * w)
        if c == 3:
            images = C[:, :3, :3] @ images + C[:, :3, 3:]
        elif c == 1:
            # Greyscale: average the colour matrix's rows, apply its total gain and offset.
            C = C[:, :3, :].mean(dim=1, keepdim=True)
            images = images * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        else:
            raise ValueError(f'colour augmentations need 1 or 3 channels, got {c}')
        return images.reshape(n, c, h, w)

    def _filter(self, images, debug):
        """Amplify or attenuate each frequency band by a random gain, keeping the expected power."""
        n, c, h, w = images.shape
        device = images.device
        pad = self.Hz_fbank.shape[1] // 2
        if min(h, w) <= pad:
            raise ValueError(f'imgfilter reflect-pads by {pad} pixels and needs images larger than '
                             f'that, got {h}x{w}')
        num_bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor(np.array([10, 1, 1, 1]) / 13, dtype=torch.float32, device=device)
        g = torch.ones([n, num_bands], device=device)
        for band, band_strength in enumerate(self.imgfilter_bands):
            t_i = _gate(torch.exp2(torch.randn([n], device=device) * self.imgfilter_std), 1,
                        self.imgfilter * self.p * band_strength, [n])
            if debug is not None:
                if band_strength > 0:
                    t_i = _fixed(t_i, torch.exp2(_percentile_normal(debug, self.imgfilter_std)))
                else:
                    t_i = torch.ones_like(t_i)
            t = torch.ones([n, num_bands], device=device)
            t[:, band] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()
            g = g * t

        # One separable filter per image, applied to every channel as a grouped convolution.
        taps = (g @ self.Hz_fbank).unsqueeze(1).repeat([1, c, 1]).reshape(n * c, 1, -1)
        images = images.reshape(1, n * c, h, w)
        images = torch.nn.functional.pad(images, [pad, pad, pad, pad], mode='reflect')
        images = conv2d_gradfix.conv2d(images, taps.unsqueeze(2), groups=n * c)
        images = conv2d_gradfix.conv2d(images, taps.unsqueeze(3), groups=n * c)
        return images.reshape(n, c, h, w)

    def _noise(self, images, debug):
        n, c, h, w = images.shape
        device = images.device
        sigma = _gate(torch.randn([n, 1, 1, 1], device=device).abs() * self.noise_std, 0,
                      self.noise * self.p, [n, 1, 1, 1])
        if debug is not None:
            sigma = _fixed(sigma, torch.erfinv(debug) * self.noise_std)  # half-normal
        return images + torch.randn([n, c, h, w], device=device) * sigma

    def _cutout(self, images, debug):
        """Zero a rectangle of cutout_size x the image size, centred at a uniform random point."""
        n, _, h, w = images.shape
        device = images.device
        size = _gate(torch.full([n, 2, 1, 1, 1], self.cutout_size, device=device), 0,
                     self.cutout * self.p, [n, 1, 1, 1, 1])
        center = torch.rand([n, 2, 1, 1, 1], device=device)
        if debug is not None:
            size = torch.full_like(size, self.cutout_size)
            center = _fixed(center, debug)
        x = (torch.arange(w, device=device).reshape(1, 1, 1, -1) + 0.5) / w
        y = (torch.arange(h, device=device).reshape(1, 1, -1, 1) + 0.5) / h
        outside = ((x - center[:, 0]).abs() >= size[:, 0] / 2) | ((y - center[:, 1]).abs() >= size[:, 1] / 2)
        return images * outside.to(images.dtype)


class AdaController:
    """NVIDIA's ADA heuristic: nudge augment_pipe.p so that E[sign(D(real))] tracks `target`.

    Call accumulate(real_logits) wherever D scores reals, and step(batch_size) once per training
    iteration; every `interval` iterations p moves by sign(mean_sign - target) *
    batch_size * interval / (kimg * 1000), i.e. it can cross [0, 1] in `kimg` thousand images,
    and is clamped at 0. The statistics are a (sum, count) pair so processes can all-reduce them.
    """

    def __init__(self, augment_pipe, target=0.6, interval=4, kimg=500):
        self.augment_pipe = augment_pipe
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = float(kimg)
        self.batch_idx = 0  # iterations since training (re)started, as NVIDIA counts them
        device = augment_pipe.p.device
        self.sign_sum = torch.zeros([], dtype=torch.float64, device=device)
        self.sign_count = torch.zeros([], dtype=torch.float64, device=device)

    @property
    def p(self):
        """The current augmentation probability, as a float for logging."""
        return float(self.augment_pipe.p)

    def accumulate(self, real_logits):
        """Add the signs of D's logits on real images to the statistics of the current interval."""
        signs = real_logits.detach().sign().to(torch.float64)
        self.sign_sum = self.sign_sum.to(signs.device) + signs.sum()
        self.sign_count = self.sign_count.to(signs.device) + signs.numel()

    def step(self, batch_size, all_reduce=None):
        """Count one iteration of `batch_size` images (all processes); maybe adjust p.

        all_reduce, if given, sums a stats tensor in place across processes (e.g.
        torch.distributed.all_reduce). Returns the step taken (before clamping at 0), or None
        when this was not an update iteration. An interval without statistics leaves p alone
        (NVIDIA's code would turn p into NaN).
        """
        self.batch_idx += 1
        if self.batch_idx % self.interval != 0:
            return None
        stats = torch.stack([self.sign_sum, self.sign_count])
        if all_reduce is not None:
            all_reduce(stats)
        self.sign_sum = torch.zeros_like(self.sign_sum)
        self.sign_count = torch.zeros_like(self.sign_count)
        total, count = stats.tolist()
        if count == 0:
            return 0.0
        direction = float(np.sign(total / count - self.target))
        adjust = direction * (batch_size * self.interval) / (self.kimg * 1000)
        p = self.augment_pipe.p
        p.copy_((p + adjust).clamp(min=0))
        return adjust

    def state_dict(self):
        """Everything needed to resume exactly: p, the iteration count and pending statistics."""
        return dict(p=self.augment_pipe.p.detach().cpu().clone(), batch_idx=self.batch_idx,
                    sign_sum=self.sign_sum.cpu().clone(), sign_count=self.sign_count.cpu().clone())

    def load_state_dict(self, state):
        device = self.augment_pipe.p.device
        self.augment_pipe.p.copy_(torch.as_tensor(state['p']))
        self.batch_idx = int(state['batch_idx'])
        self.sign_sum = torch.as_tensor(state['sign_sum'], dtype=torch.float64).to(device)
        self.sign_count = torch.as_tensor(state['sign_count'], dtype=torch.float64).to(device)
