"""Edge maps for the Structural Consistency Score: a built-in Sobel detector, or HED given weights.

sobel (built in, no weights): luminance (ITU-R 601) of the image in [0, 1], Gaussian blur with
sigma 1 px (5x5 taps, reflected borders), Sobel gradient magnitude, each map divided by its own
maximum so that maps lie in [0, 1] like HED's edge probabilities and contrast differences between
domains (photo vs sketch) do not count as structure.

hed: Holistically-nested Edge Detection (Xie & Tu 2015), the detector RSSA's paper uses, with the
BSDS500 weights of sniklaus/pytorch-hed (network-bsds500.pytorch; key prefixes 'module' or 'net').
gda ships no weights: pass the file's path (--hed or $GDA_HED). Its maps are the fused sigmoid
output at the input resolution.
"""

import os

import torch
import torch.nn.functional as F

from stylegan2_ada.errors import UserError

from ..metric_names import EDGE_DETECTORS
HED_ENV = 'GDA_HED'
HED_URL = 'http://content.sniklaus.com/github/pytorch-hed/network-bsds500.pytorch'
_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


def _gaussian_taps(sigma=1.0, radius=2):
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-x.square() / (2 * sigma ** 2))
    return taps / taps.sum()


def sobel_edges(images):
    """[N, 1, H, W] edge maps in [0, 1] of [N, C, H, W] images in [0, 1] (C = 1 or 3; alpha dropped)."""
    x = images.to(torch.float32)
    if x.shape[1] >= 3:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    else:
        x = x[:, :1]
    taps = _gaussian_taps().to(x.device)
    x = F.conv2d(F.pad(x, [2, 2, 0, 0], mode='reflect'), taps.view(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, [0, 0, 2, 2], mode='reflect'), taps.view(1, 1, 5, 1))
    kx = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]], device=x.device)
    padded = F.pad(x, [1, 1, 1, 1], mode='reflect')
    gx = F.conv2d(padded, kx.view(1, 1, 3, 3))
    gy = F.conv2d(padded, kx.T.contiguous().view(1, 1, 3, 3))
    magnitude = torch.sqrt(gx.square() + gy.square())
    return magnitude / magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)


def _vgg_stage(channels_in, channels_out, convs, pool):
    layers = [torch.nn.MaxPool2d(2, 2)] if pool else []
    for i in range(convs):
        layers += [torch.nn.Conv2d(channels_in if i == 0 else channels_out, channels_out, 3, padding=1),
                   torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


class HED(torch.nn.Module):
    """HED's network with pytorch-hed's layer names; input RGB [N, 3, H, W] in [0, 255]."""

    def __init__(self):
        super().__init__()
        self.netVggOne = _vgg_stage(3, 64, 2, pool=False)
        self.netVggTwo = _vgg_stage(64, 128, 2, pool=True)
        self.netVggThr = _vgg_stage(128, 256, 3, pool=True)
        self.netVggFou = _vgg_stage(256, 512, 3, pool=True)
        self.netVggFiv = _vgg_stage(512, 512, 3, pool=True)
        self.netScoreOne = torch.nn.Conv2d(64, 1, 1)
        self.netScoreTwo = torch.nn.Conv2d(128, 1, 1)
        self.netScoreThr = torch.nn.Conv2d(256, 1, 1)
        self.netScoreFou = torch.nn.Conv2d(512, 1, 1)
        self.netScoreFiv = torch.nn.Conv2d(512, 1, 1)
        self.netCombine = torch.nn.Sequential(torch.nn.Conv2d(5, 1, 1), torch.nn.Sigmoid())

    def forward(self, images):
        x = images.flip(1) - torch.tensor(_BGR_MEAN, device=images.device).view(1, 3, 1, 1)
        size = images.shape[2:]
        scores = []
        for stage, score in ((self.netVggOne, self.netScoreOne), (self.netVggTwo, self.netScoreTwo),
                             (self.netVggThr, self.netScoreThr), (self.netVggFou, self.netScoreFou),
                             (self.netVggFiv, self.netScoreFiv)):
            x = stage(x)
            scores.append(F.interpolate(score(x), size=size, mode='bilinear', align_corners=False))
        return self.netCombine(torch.cat(scores, 1))


def hed_path(path=None):
    path = path or os.environ.get(HED_ENV)
    if not path:
        raise UserError(f'the hed edge detector needs HED weights, which gda does not ship: download '
                        f'{HED_URL} and pass its path with --hed PATH or ${HED_ENV} (or use --edges sobel)')
    if not os.path.isfile(path):
        raise UserError(f'HED weights {path} do not exist')
    return path


def load_hed(path=None, device='cpu'):
    """HED with the weights of pytorch-hed's file; every tensor must fit exactly."""
    path = hed_path(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a state_dict
        raise UserError(f'cannot read HED weights {path}: {str(error).splitlines()[0]}') from None
    if not isinstance(state, dict):
        raise UserError(f'{path} is not a HED state_dict (a {type(state).__name__})')
    state = {key.replace('module', 'net', 1) if key.startswith('module') else key: value
             for key, value in state.items()}
    model = HED()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(key for key in set(expected) & set(state) if state[key].shape != expected[key].shape)
    if missing or extra or wrong:
        raise UserError(f'{path} does not fit HED: missing {missing[:3]}, unexpected {extra[:3]}, '
                        f'wrong shape {wrong[:3]}')
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


def edge_function(kind, hed=None, device='cpu'):
    """edges([-1, 1] images) -> [N, 1, H, W] maps in [0, 1], for `kind` in EDGE_DETECTORS."""
    if kind == 'sobel':
        return lambda images: sobel_edges(((images.to(torch.float32) + 1) / 2).clamp(0, 1))
    if kind == 'hed':
        model = load_hed(hed, device)

        def hed_edges(images):
            x = ((images.to(torch.float32) + 1) * 127.5).clamp(0, 255)
            x = x[:, :1].repeat(1, 3, 1, 1) if x.shape[1] < 3 else x[:, :3]
            return model(x)
        return hed_edges
    raise UserError(f'unknown edge detector {kind!r}; choose from {", ".join(EDGE_DETECTORS)}')
