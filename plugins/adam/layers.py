"""Which layers AdAM modulates, and which base parameters it freezes.

The official model (model_adam.py) gives every G weight a modulation: the mapping layers, every
synthesis convolution (4x4 included), every toRGB, and each one's style affine; in D every block
convolution (fromRGB, conv0, conv1, skip) but not the epilogue (`final_*`), which trains plainly.
Base weights are frozen except those of the ranked filters (gda_core.filters), where only the
kept ones are; the official additive bias vectors (b_vector) train while the base bias is frozen,
which under Adam is the same as training the bias, so every bias and noise strength trains here.
"""


def g_layers(G):
    paths = [f'G.mapping.fc{i}' for i in range(G.mapping.num_layers)]
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f'b{res}')
        for name in ('conv0', 'conv1', 'torgb'):
            if hasattr(block, name):
                paths += [f'G.synthesis.b{res}.{name}', f'G.synthesis.b{res}.{name}.affine']
    return paths


def d_layers(D):
    paths = []
    for res in D.block_resolutions:
        block = getattr(D, f'b{res}')
        paths += [f'D.b{res}.{name}' for name in ('fromrgb', 'conv0', 'conv1', 'skip')
                  if getattr(block, name, None) is not None]
    return paths


def frozen_names(G, D, ranked):
    """Qualified names of the base parameters AdAM freezes outright: every modulated weight that
    holds no ranked filters, and G's constant input. `ranked` are the ranked weights' names."""
    paths = g_layers(G) + (d_layers(D) if D is not None else [])
    names = {f'{path}.weight' for path in paths} - set(ranked)
    names.add('G.synthesis.b4.const')
    return names
