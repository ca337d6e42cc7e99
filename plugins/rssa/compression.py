"""RSSA's latent space compression (Xiao et al., CVPR 2022, §3.3, eq. 8).

For W+ entry l, A^l = [w_1^l ... w_n^l] holds the target images' inverted codes. A latent w^l is
projected onto the column space of A^l by least squares, rescaled to the norm of w^l and mixed with
it: w_hat = alpha_l * proj * |w| / |proj| + (1 - alpha_l) * w. It acts on both the source and the
adapted generator, in training and at generation: the adapted model is G_t + codes + alphas.
"""

import numpy as np
import torch

# The official code's strengths for the 14 W+ entries of a 256 px StyleGAN2: nothing at the coarse
# layers, most at the fine ones (the paper: "large alpha at the top layers"). Faces use
# Projection_module, churches Projection_module_church (model.py); they differ at entries 7-13.
OFFICIAL_ALPHAS = (0, 0, 0, .05, .05, .05, .05, .45, .45, .65, .65, .85, .85, .85)
CHURCH_ALPHAS = (0, 0, 0, .05, .05, .05, .05, .35, .35, .55, .55, .75, .75, .75)
DOMAIN_ALPHAS = {'paper': OFFICIAL_ALPHAS, 'church': CHURCH_ALPHAS}
EPS = 1e-8


def paper_alphas(num_ws, domain='paper'):
    """The official alphas of `domain` ('paper' = faces, 'church') for `num_ws` entries.

    Entry l sits at depth l / (num_ws - 1); its alpha interpolates the official curve linearly at
    that depth, so 14 entries give the official values exactly and other resolutions keep the
    shape: zero for the coarsest ~20%, the largest value for the finest ~15%.
    """
    official_values = DOMAIN_ALPHAS[domain]
    if num_ws == 1:
        return [float(official_values[-1])]
    depth = np.linspace(0, 1, num_ws)
    official = np.linspace(0, 1, len(official_values))
    return [round(float(a), 6) for a in np.interp(depth, official, official_values)]


def projectors(codes):
    """[n, num_ws, w_dim] codes -> [num_ws, w_dim, w_dim]: P_l = A (A^T A)^+ A^T, the orthogonal
    projector onto span(A^l) (the pseudo-inverse keeps it defined when codes are dependent)."""
    A = codes.to(torch.float64).permute(1, 2, 0)        # [num_ws, w_dim, n]
    return (A @ torch.linalg.pinv(A)).to(torch.float32)


class LatentCompression:
    """ws [N, num_ws, w_dim] -> compressed ws (eq. 8); a w-transform with target 'both'.

    Holds no parameters (nothing trains): the codes and alphas are the plugin's state, set by
    setup or load_state_dict. Layers whose alpha is 0 pass through unchanged.
    """

    def __init__(self, alphas):
        self.alphas = torch.as_tensor(alphas, dtype=torch.float32)
        self.codes = None
        self._projectors = None

    def set_codes(self, codes):
        codes = torch.as_tensor(codes, dtype=torch.float32).cpu()
        if codes.ndim != 3 or codes.shape[1] != len(self.alphas):
            raise ValueError(f'codes must be [n, {len(self.alphas)}, w_dim], got {list(codes.shape)}')
        self.codes = codes
        self._projectors = projectors(codes)

    def project(self, ws):
        """The least-squares projection of each W+ entry onto the codes' span (eq. 8, first line)."""
        if self._projectors is None:
            raise RuntimeError('rssa compression used before its codes were set')
        if self._projectors.device != ws.device:
            self._projectors = self._projectors.to(ws.device)
        return torch.einsum('lcd,nld->nlc', self._projectors, ws)

    def __call__(self, ws, it=None):
        alphas = self.alphas.to(ws.device)
        if not bool((alphas != 0).any()):
            return ws
        proj = self.project(ws)
        scale = ws.norm(dim=2, keepdim=True) / proj.norm(dim=2, keepdim=True).clamp_min(EPS)
        alpha = alphas.reshape(1, -1, 1)
        mixed = alpha * (proj * scale) + (1 - alpha) * ws
        return torch.where(alpha == 0, ws, mixed)
