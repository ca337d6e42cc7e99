"""The values idc's options offer, torch-free so that declaring the options never loads torch."""

AUTO = 'auto'   # --idc-layers: every synthesis layer but b4.conv1

# 'official': KL(p_source || p_target), what the official code computes (KLDivLoss(log p_t, p_s)).
# 'paper': KL(p_target || p_source), the order written in the paper's equation 3.
DIRECTIONS = ('official', 'paper')
