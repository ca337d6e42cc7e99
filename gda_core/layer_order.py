"""D's layers in NVIDIA's `freeze_layers` counting, the order Freeze-D and AdaFM count in.

NVIDIA numbers D's layers across blocks from the highest resolution, in creation order within a
block: fromrgb (when present), conv0, conv1, skip (resnet). The epilogue (b4) is not counted. Kept
in the host so that freezed and adafm share it without importing each other.
"""

LAYER_NAMES = ('fromrgb', 'conv0', 'conv1', 'skip')


def d_layer_order(D):
    """['b256.fromrgb', 'b256.conv0', 'b256.conv1', 'b256.skip', 'b128.conv0', ...] for D."""
    order = []
    for res in D.block_resolutions:
        block = getattr(D, f'b{res}')
        names = [f'b{res}.{name}' for name in LAYER_NAMES if hasattr(block, name)]
        if block.first_layer_idx != len(order) or block.num_layers != len(names):
            raise ValueError(f'D block b{res} does not follow NVIDIA\'s layer counting '
                             f'(first index {block.first_layer_idx}, {block.num_layers} layers)')
        order += names
    return order
