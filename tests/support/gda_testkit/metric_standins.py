"""Small TorchScript stand-ins for NVIDIA's detectors, with the same call signatures.

inception: features are a fixed linear map of the 4x4 average-pooled image (so a brightness
shift moves every feature vector by a known amount); no_output_bias gives softmax probabilities
like NVIDIA's file (or logits with logits=True, as docs/metrics.md describes the convention).
vgg16: return_features gives a linear map of the pooled image; return_lpips gives per-layer
channel-normalised conv features scaled so that the squared difference summed is a spatial mean,
as LPIPS is. The tests reach it through the `standins` fixture (tests/conftest.py) or import it.
"""

import warnings

import torch
import torch.nn.functional as F


class Inception(torch.nn.Module):
    def __init__(self, dim=16, classes=12, logits: bool = False):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.proj = torch.nn.Parameter(torch.randn(48, dim, generator=generator))
        self.output = torch.nn.Linear(dim, classes)
        with torch.no_grad():
            self.output.weight.copy_(torch.randn(classes, dim, generator=generator))
            self.output.bias.copy_(torch.randn(classes, generator=generator) * 5)
        self.logits = logits

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        assert img.shape[1] == 3
        features = F.adaptive_avg_pool2d(img.to(torch.float32) / 255, 4).flatten(1) @ self.proj
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return logits if self.logits else logits.softmax(1)


class VGG16(torch.nn.Module):
    def __init__(self, dim=24):
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        self.proj = torch.nn.Parameter(torch.randn(48, dim, generator=generator))
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, stride=2)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.3)
                conv.bias.zero_()

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)
        return x.flatten(1) / (x.shape[2] * x.shape[3]) ** 0.5

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert img.shape[1] == 3
        x = img.to(torch.float32) / 255
        if resize_images:
            x = F.interpolate(x, size=(32, 32), mode='area')
        if return_lpips:
            f1 = F.leaky_relu(self.conv1(x * 2 - 1), 0.2)
            f2 = F.leaky_relu(self.conv2(f1), 0.2)
            return torch.cat([self._normalised(f1), self._normalised(f2)], 1)
        return F.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


def script(module):
    """`module` as TorchScript, the form NVIDIA's detectors come in."""
    with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript; NVIDIA's detectors are TorchScript
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.script(module.eval())


def save(module, path):
    """Script `module`, save it at `path`, return the path."""
    script(module).save(str(path))
    return path
