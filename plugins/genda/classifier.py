"""GenDA's attribute classifier (§2.2, eq. 4): a linear head on the frozen D backbone.

The pre-trained D is reused as a feature extractor; its real/fake head (`b4.out`, and the label
projection of a conditional D) is replaced by one linear layer on the epilogue's last hidden
features `b4.fc`. The paper's table A2 found heavier (MLP) heads worse.
"""

import torch

from stylegan2_ada.layers import FullyConnectedLayer

FEATURE = 'b4.fc'


class AttributeClassifier(torch.nn.Module):
    """module(logits, feats, c, it) -> [N, 1] logits of "has the target attributes"."""

    def __init__(self, channels):
        super().__init__()
        self.fc = FullyConnectedLayer(channels, 1)   # equalised lr, like D's own output layer

    def forward(self, logits, feats, c=None, it=None):
        return self.fc(feats[FEATURE])
