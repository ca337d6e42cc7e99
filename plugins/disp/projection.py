"""DISP's discriminator side: the projection term and the hinge loss (slides eq. 1-2).

D(x, y) = D_emb(y) . D_f(x) + D_I(D_f(x)) is the projection discriminator of Miyato & Koyama
(2018). On our core D_f is D's penultimate feature (`b4.fc`) and D_I is the source's own output
layer, so the loop's logits already are D_I(D_f(x)); this head adds D_emb(y) . D_f(x). D_emb starts
at zero: the adapted D starts as the unconditional source D.
"""

import torch
import torch.nn.functional as F

from stylegan2_ada.layers import FullyConnectedLayer, normalize_2nd_moment

FEATURE = 'b4.fc'


class ProjectionHead(torch.nn.Module):
    """(logits, feats, c, it) -> [N] = D_emb(c) . D_f(x), D_emb linear without bias, zero init.

    c is scaled to unit second moment first (as NVIDIA's conditional networks do with their
    embeddings), so the head's scale does not depend on the extractor's feature magnitudes.
    """

    def __init__(self, c_dim, channels):
        super().__init__()
        self.embed = FullyConnectedLayer(c_dim, channels, bias=False)
        with torch.no_grad():
            self.embed.weight.zero_()

    def forward(self, logits, feats, c, it=None):
        y = normalize_2nd_moment(c.to(torch.float32))
        return (self.embed(y) * feats[FEATURE]).sum(dim=1)


def hinge_loss(kind, logits):
    """The slides' hinge losses per element: L_G = -D(G(z|c), c); L_D = max(0, 1 - D(x, c)) +
    max(0, 1 + D(G(z|c), c))."""
    if kind == 'G_fake':
        return -logits
    if kind == 'D_real':
        return F.relu(1 - logits)
    if kind == 'D_fake':
        return F.relu(1 + logits)
    raise ValueError(f'unknown adversarial loss kind {kind!r}')
