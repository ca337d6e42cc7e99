"""`gda info SOURCE`: what a checkpoint holds and how its networks are configured.

Read from the rebuilt modules and their state_dict shapes rather than from stored kwargs, so the
numbers are those of the networks that will actually run (defaults filled in, TF conversions
included). A rosinality checkpoint also shows the architecture inferred for it in rosinality's
terms (size, style_dim, n_mlp, channel multiplier), which file key became which network, and where
w_avg came from.
"""

import json

import click

import stylegan2_ada   # cheap: stylegan2_ada.load imports torch on first use

NETWORKS = ('G', 'D', 'G_ema', 'augment_pipe')


def _counts(module):
    params = sum(p.numel() for p in module.parameters())
    frozen = sum(b.numel() for name, b in module.named_buffers() if name.endswith(('.weight', '.bias')))
    return params, frozen


def describe_generator(G):
    synthesis = G.synthesis
    blocks = [getattr(synthesis, f'b{res}') for res in synthesis.block_resolutions]
    params, frozen = _counts(G)
    state = G.state_dict()
    return dict(kind='generator', class_name=type(G).__name__, resolution=G.img_resolution,
                img_channels=G.img_channels, z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim,
                num_ws=G.num_ws, mapping_layers=G.mapping.num_layers,
                architecture=blocks[-1].architecture,
                channels={res: int(state[f'synthesis.b{res}.conv1.weight'].shape[0])
                          for res in synthesis.block_resolutions},
                fp16_resolutions=[block.resolution for block in blocks if block.use_fp16],
                parameters=params, frozen_parameters=frozen)


def describe_discriminator(D):
    blocks = [getattr(D, f'b{res}') for res in D.block_resolutions]
    params, frozen = _counts(D)
    state = D.state_dict()
    channels = {res: int(state[f'b{res}.conv0.weight'].shape[0]) for res in D.block_resolutions}
    channels[4] = int(state['b4.conv.weight'].shape[0])
    frozen_layers = sorted({name.rsplit('.', 1)[0] for name, _ in D.named_buffers()
                            if name.endswith('.weight')})
    return dict(kind='discriminator', class_name=type(D).__name__, resolution=D.img_resolution,
                img_channels=D.img_channels, c_dim=D.c_dim, architecture=blocks[0].architecture,
                mapping_layers=D.mapping.num_layers if D.c_dim else 0, cmap_dim=D.cmap_dim,
                channels=channels, fp16_resolutions=[block.resolution for block in blocks if block.use_fp16],
                frozen_layers=frozen_layers, parameters=params, frozen_parameters=frozen)


def describe_augment(pipe):
    kwargs = pipe.init_kwargs
    enabled = [name for name, value in kwargs.items()
               if not name.endswith(('_std', '_max', '_bands', '_size')) and value]
    return dict(kind='augment_pipe', class_name=type(pipe).__name__, p=float(pipe.p), enabled=enabled)


def describe_network(module):
    if hasattr(module, 'synthesis') and hasattr(module, 'mapping'):
        return describe_generator(module)
    if hasattr(module, 'block_resolutions') and hasattr(module, 'b4'):
        return describe_discriminator(module)
    if hasattr(module, 'p') and hasattr(module, 'init_kwargs'):
        return describe_augment(module)
    return dict(kind='module', class_name=type(module).__name__, parameters=_counts(module)[0])


def describe_gda(gda):
    if gda is None:
        return None
    source = gda.get('source') or {}
    loop = gda.get('loop') or {}
    return dict(format_version=gda.get('format_version'),
                source=dict(reference=source.get('reference'), sha256=source.get('sha256')) if source else None,
                source_G=describe_network(gda['source_G']) if gda.get('source_G') is not None else None,
                plugins=[dict(name=p['name'], distribution=p['distribution'], version=p['version'],
                              options=p['options']) for p in gda.get('plugins') or []],
                loop={key: loop[key] for key in ('cur_nimg', 'iteration', 'tick') if key in loop})


def describe(data):
    """A JSON-able summary of stylegan2_ada.load's result."""
    origin = data['origin']
    networks = {key: describe_network(data[key]) for key in NETWORKS if data.get(key) is not None}
    extra = sorted(key for key in data
                   if key not in NETWORKS + ('training_set_kwargs', 'gda', 'origin', 'rosinality'))
    return dict(source=origin['reference'], url=origin['url'], path=origin['path'], sha256=origin['sha256'],
                format=origin['format'], networks=networks, training_set_kwargs=data.get('training_set_kwargs'),
                gda=describe_gda(data.get('gda')), rosinality=describe_rosinality(data.get('rosinality')),
                other_keys=extra)


def describe_rosinality(info):
    """The architecture inferred for a rosinality checkpoint, in rosinality's own terms."""
    if info is None:
        return None
    keys = ('size', 'style_dim', 'n_mlp', 'channel_multiplier', 'widths', 'source', 'networks', 'w_avg', 'noise')
    return {key: info.get(key) for key in keys}


def _rosinality_lines(info):
    multiplier = info['channel_multiplier']
    widths = (f'channel multiplier {multiplier}' if multiplier is not None
              else f'no channel multiplier (widths {_channels_text(info["widths"])})')
    generator = f', style_dim {info["style_dim"]}, n_mlp {info["n_mlp"]}' if info['style_dim'] else ''
    lines = [f'{"architecture":<14}size {info["size"]}{generator}, {widths} (from the {info["source"]})',
             f'{"  networks":<14}' + ', '.join(f'{key} -> {name}' for key, name in info['networks'].items())]
    if info['w_avg']:
        lines.append(f'{"  w_avg":<14}{info["w_avg"]}')
    if info['noise']:
        lines.append(f'{"  noise":<14}{info["noise"]}')
    return lines


def _channels_text(channels):
    return ' '.join(f'{res}:{ch}' for res, ch in sorted(channels.items()))


def _network_lines(name, info):
    if info['kind'] == 'augment_pipe':
        return [f'{name:<14}{info["class_name"]}, p = {info["p"]:.4f}, on: {", ".join(info["enabled"]) or "nothing"}']
    if info['kind'] == 'module':
        return [f'{name:<14}{info["class_name"]}, {info["parameters"]:,} parameters']
    frozen = f' + {info["frozen_parameters"]:,} frozen' if info['frozen_parameters'] else ''
    lines = [f'{name:<14}{info["class_name"]}, {info["parameters"]:,} parameters{frozen}',
             f'{"":<2}{"resolution":<12}{info["resolution"]} x {info["resolution"]}, {info["img_channels"]} channel(s)']
    if info['kind'] == 'generator':
        lines.append(f'{"":<2}{"z/c/w dims":<12}{info["z_dim"]} / {info["c_dim"]} / {info["w_dim"]}, '
                     f'{info["num_ws"]} ws')
    else:
        lines.append(f'{"":<2}{"c dim":<12}{info["c_dim"]}' + (f', cmap {info["cmap_dim"]}' if info['c_dim'] else ''))
    lines += [f'{"":<2}{"mapping":<12}{info["mapping_layers"]} layers',
              f'{"":<2}{"arch":<12}{info["architecture"]}',
              f'{"":<2}{"channels":<12}{_channels_text(info["channels"])}',
              f'{"":<2}{"fp16":<12}{", ".join(map(str, info["fp16_resolutions"])) or "none"}']
    if info.get('frozen_layers'):
        lines.append(f'{"":<2}{"frozen":<12}{", ".join(info["frozen_layers"])}')
    return lines


def format_text(summary):
    from stylegan2_ada.checkpoint.loader import FORMAT_NAMES   # torch: not needed by --help
    lines = [f'{"source":<14}{summary["source"]}']
    if summary['url'] and summary['url'] != summary['source']:
        lines.append(f'{"url":<14}{summary["url"]}')
    lines += [f'{"file":<14}{summary["path"]}', f'{"sha256":<14}{summary["sha256"]}',
              f'{"format":<14}{FORMAT_NAMES[summary["format"]]}',
              f'{"networks":<14}{", ".join(summary["networks"]) or "none"}']
    if summary.get('rosinality'):
        lines += _rosinality_lines(summary['rosinality'])
    for name, info in summary['networks'].items():
        lines += _network_lines(name, info)
    if summary['training_set_kwargs']:
        kwargs = ', '.join(f'{k}={v}' for k, v in summary['training_set_kwargs'].items())
        lines.append(f'{"training set":<14}{kwargs}')
    gda = summary['gda']
    if gda is None:
        lines.append(f'{"gda":<14}not a gda snapshot (no plugins stored)')
    else:
        source = gda['source'] or {}
        lines.append(f'{"gda":<14}snapshot format {gda["format_version"]}'
                     + ''.join(f', {k} {v}' for k, v in gda['loop'].items()))
        if source:
            lines.append(f'{"  source":<14}{source["reference"]} (sha256 {str(source["sha256"])[:12]}...)')
        lines.append(f'{"  source G":<14}{"stored" if gda["source_G"] else "not stored"}')
        plugins = ', '.join(f'{p["name"]} ({p["distribution"]} {p["version"]})' for p in gda['plugins'])
        lines.append(f'{"  plugins":<14}{plugins or "none"}')
    if summary['other_keys']:
        lines.append(f'{"other keys":<14}{", ".join(summary["other_keys"])}')
    return '\n'.join(lines)


@click.command()
@click.argument('source', metavar='SOURCE')
@click.option('--json', 'as_json', help='Print JSON instead of text', is_flag=True)
def info(source, as_json):
    """Show what a checkpoint (path, URL or preset) holds and how its networks are configured."""
    summary = describe(stylegan2_ada.load(source, verbose=True))
    click.echo(json.dumps(summary, indent=2, default=str) if as_json else format_text(summary))
