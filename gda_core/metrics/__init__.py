"""Metrics: fid, kid, pr, is, intra_lpips, scs, for a network or each snapshot of a training run.

evaluate() computes metrics of a generator in memory; evaluate_network() of a checkpoint (path,
URL or preset); evaluate_snapshot() of one snapshot of a run, appending a line per metric to
<run_dir>/metric-<name>.jsonl (what `gda train --metrics` calls at each snapshot). Protocols:
docs/metrics.md. Evaluation never touches the caller's random state: it runs under a forked RNG
seeded from `seed`, so training resumes exactly whether or not metrics ran.
"""

import os
import time

import torch

import stylegan2_ada
from stylegan2_ada.detectors import detector_path
from stylegan2_ada.errors import UserError

from . import fid, inception_score, intra_lpips, kid, precision_recall, scs
from .evaluation import Evaluation, default_generate
from .pairs import default_pairs, model_pipelines, plugin_pipelines
from .records import append_record, snapshot_kimg

METRICS = {module.NAME: module for module in (fid, kid, precision_recall, inception_score, intra_lpips, scs)}

__all__ = ['METRICS', 'DETECTOR_OF', 'check_detectors', 'format_record', 'evaluate', 'evaluate_network', 'evaluate_snapshot', 'parse_metrics', 'default_pairs',
           'default_generate', 'Evaluation']


def parse_metrics(names):
    """A list of metric names from 'fid,kid' or a sequence; unknown names are a UserError."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(',') if name.strip()]
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f'unknown metric(s) {", ".join(unknown) or "(none given)"}; choose from {", ".join(METRICS)}')
    return names


# The detector file each metric needs (scs uses the built-in Sobel edges unless told otherwise).
DETECTOR_OF = {'fid': 'inception', 'kid': 'inception', 'is': 'inception', 'pr': 'vgg16',
               'intra_lpips': 'vgg16', 'scs': None}


def check_detectors(metrics):
    """Find (or download into the cache) every detector file `metrics` need, so that a missing
    file stops `gda train --metrics` before training rather than at its first snapshot."""
    for name in sorted({DETECTOR_OF[metric] for metric in metrics} - {None}):
        detector_path(name)


def _num(num_gen, name):
    if isinstance(num_gen, dict):
        return int(num_gen.get(name, METRICS[name].DEFAULT_NUM))
    return int(num_gen) if num_gen is not None else METRICS[name].DEFAULT_NUM


def evaluate(metrics, G, *, generate=None, source_G=None, pairs=None, data=None, train_data=None, num_gen=None,
             num_real=None, seed=0, truncation_psi=1.0, noise_mode='random', batch=32, device=None,
             detector_paths=None, edges='sobel', use_cache=True, log=None):
    """{metric: record} for generator G (z_dim/c_dim from G; images from generate(z, c) if given).

    num_gen: an int for every metric or {metric: int}; defaults per metric (docs/metrics.md).
    pairs(z) -> (source, adapted) images for scs; default: source_G and G without plugins.
    """
    names = parse_metrics(metrics)
    device = torch.device(device or next(G.parameters()).device)
    generate = generate or default_generate(G, truncation_psi, noise_mode)
    pairs_noise = 'given pairs' if pairs is not None else 'const'   # pairs share the source's noise buffers
    if pairs is None and source_G is not None:
        pairs = default_pairs(source_G, G, truncation_psi, noise_mode='const')
    ev = Evaluation(generate, G.z_dim, G.c_dim, pairs=pairs, data=data, train_data=train_data, num_real=num_real,
                    detector_paths=detector_paths, edges=edges, device=device, batch=batch, seed=seed,
                    use_cache=use_cache, log=log)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []  # manual_seed seeds all
    records = {}
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        start = time.time()
        ev.precompute([need for name in names for need in METRICS[name].needs(_num(num_gen, name))])
        shared_time = time.time() - start   # the one generation pass that fid, kid, pr and is share
        for name in names:
            start = time.time()
            out = METRICS[name].compute(ev, _num(num_gen, name))
            protocol = dict(out['protocol'], seed=seed, truncation_psi=truncation_psi, noise_mode=noise_mode)
            if name in ('fid', 'kid', 'pr'):
                protocol['data'] = os.fspath(data)
            if name == 'intra_lpips':
                protocol['train_data'] = os.fspath(ev.train_data)
            if name == 'scs':
                protocol['noise_mode'] = pairs_noise
            records[name] = dict(metric=name, results=out['results'], protocol=protocol,
                                 total_time=time.time() - start, shared_time=shared_time, timestamp=time.time())
            if log:
                log(format_record(records[name]))
    return records


def format_record(record):
    """One line: 'fid 12.3456  (5000 generated, 10 real, 3.2 s)'."""
    results = '  '.join(f'{key} {value:.4f}' for key, value in record['results'].items())
    protocol = record['protocol']
    sizes = []
    for key, label in (('num_gen', 'generated'), ('num_real', 'real'), ('num_pairs', 'pairs'),
                       ('clusters_used', 'clusters')):
        if key in protocol:
            sizes.append(f'{protocol[key]} {label}')
    where = f'{record["snapshot"]}: ' if record.get('snapshot') else ''
    return f'{where}{results}  ({", ".join(sizes)}, {record["total_time"]:.1f} s)'


def _existing(path):
    return path if path and os.path.exists(os.fspath(path)) else None


def _generators(loaded, source=None):
    """(G_ema or G, source G or None) of a checkpoint; `source` (network or checkpoint) overrides."""
    G = _generator_of(loaded, loaded['origin']['reference'])
    source_G = (loaded.get('gda') or {}).get('source_G')
    return G, _as_generator(source) if source is not None else source_G


def _as_generator(network):
    """A generator module from a module or a checkpoint reference (its G_ema, else G)."""
    if isinstance(network, torch.nn.Module):
        return network
    return _generator_of(stylegan2_ada.load(network), network)


def _generator_of(loaded, where):
    for key in ('G_ema', 'G'):
        if loaded.get(key) is not None:
            return loaded[key]
    raise UserError(f'{where} holds no generator')


def evaluate_network(network, metrics, *, data=None, train_data=None, source=None, device=None, **options):
    """{metric: record} of a checkpoint's G_ema (path, URL, preset, or a stylegan2_ada.load dict).

    data defaults to the checkpoint's training set when that path exists here; source (a network
    or checkpoint) replaces the stored source G for scs. A snapshot that names plugins is rendered
    through them (the plugin host) unless generate/pairs are given.
    """
    loaded = network if isinstance(network, dict) else stylegan2_ada.load(network)
    G, source_G = _generators(loaded, source)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    data = data or _existing((loaded.get('training_set_kwargs') or {}).get('path'))
    plugins = (loaded.get('gda') or {}).get('plugins') or []
    if plugins and options.get('generate') is None and options.get('pairs') is None:
        override = source_G if source is not None else None
        generate, pairs = plugin_pipelines(loaded['origin']['path'], device, options.get('truncation_psi', 1.0),
                                           options.get('noise_mode', 'random'), override)
        options = dict(options, generate=generate, pairs=pairs)
    records = evaluate(metrics, G.to(device), source_G=source_G.to(device) if source_G is not None else None,
                       data=data, train_data=train_data, device=device, **options)
    return _labelled(records, loaded['origin']['reference'], [plugin.get('name') for plugin in plugins])


def _labelled(records, network, plugins):
    """Records naming the network file and the plugins it was rendered through."""
    for record in records.values():
        record['network'] = network
        if plugins:
            record['protocol']['plugins'] = list(plugins)
    return records


def evaluate_snapshot(run_dir, snapshot_path, metrics, *, model=None, G=None, source_G=None, generate=None,
                      pairs=None, data=None, train_data=None, kimg=None, iteration=None, device=None, **options):
    """Evaluate one snapshot of a run and append each metric's record to metric-<name>.jsonl.

    The file is loaded unless the networks in memory are given: `model`, the training run's live
    networks as a gda_core.generate.Model (what `gda train --metrics` passes: rendered as the file
    would be, through its plugins if it has any, with its source G), or G_ema as `G` (with source_G,
    and generate/pairs for plugin transforms). source_G may also be a checkpoint reference; it
    replaces the snapshot's stored source G. data defaults to a loaded snapshot's training set.
    Returns {metric: record}.
    """
    loaded = plugins = None
    if model is not None:
        G, source_G = model.G, model.G_s
        plugins = [record['name'] for record in model.plugins]
        if plugins:
            generate, pairs = model_pipelines(model, options.get('truncation_psi', 1.0),
                                              options.get('noise_mode', 'random'))
    elif G is None:
        loaded = stylegan2_ada.load(snapshot_path)
    if kimg is None:
        kimg = snapshot_kimg(snapshot_path, loaded)
    if iteration is None and loaded is not None:
        iteration = ((loaded.get('gda') or {}).get('loop') or {}).get('iteration')
    if loaded is not None:
        records = evaluate_network(loaded, metrics, data=data, train_data=train_data, source=source_G,
                                   device=device, generate=generate, pairs=pairs, **options)
    else:
        source_G = _as_generator(source_G) if source_G is not None else None
        records = evaluate(metrics, G, source_G=source_G, generate=generate, pairs=pairs, data=data,
                           train_data=train_data, device=device, **options)
        if plugins is not None:
            _labelled(records, str(snapshot_path), plugins)
    for record in records.values():
        record.update(snapshot=os.path.basename(snapshot_path), kimg=kimg, iteration=iteration)
        append_record(run_dir, record)
    return records
