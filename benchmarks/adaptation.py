"""Adaptation benchmark on the offline protocol: every method plugin, one budget, one detector.

Protocol (defaults): the bundled demo source generator (trained by gda on all 3,786 Noto emoji,
32 px) is fine-tuned by `gda train` on the 10 bundled Twemoji shots, once per configuration
(baseline, each method plugin, the advertised combinations, and one-shot rows) with the same
iterations, batch and seeds. Every --eval-every iterations the run's snapshot is scored against the
3,776 held-out Twemoji emoji: KID and FID, intra-cluster diversity (CDC's intra-LPIPS), SCS
(RSSA's structural consistency with the source, Sobel edges) and correspondence (for the same z, is
the adapted image nearest to the Twemoji version of the emoji the source drew? see
correspondence.py), plus the training's sec/kimg and peak memory. No Inception or VGG16 weights
exist offline, so every feature-based metric uses one substitute detector trained here on the
source and target domains' images (substitute_detector.py). Numbers are comparable within one
table only.

    python benchmarks/adaptation.py --quick                  # baseline, CDC, RSSA, GenDA; 1 seed
    python benchmarks/adaptation.py                          # every configuration, seeds 0,1,2
    python benchmarks/adaptation.py --source S.pkl --target shots/ --heldout rest.zip \
        --source-data source-domain.zip                      # your own domain pair

Runs already finished in --workdir are skipped and a stopped run resumes (`gda train --resume`
between evaluation points), so the command can be run again after an interruption. Writes
<out>/adaptation.json, adaptation.md and adaptation-<metric>.png (one curve per configuration over
the iterations). Training runs are separate `gda train` processes (one thread each unless
--threads), so peak memory is per run; --in-process runs them inside this process instead (faster
to start, memory not measured), and --smoke shortens every plugin's setup work (CI).
"""

import dataclasses
import datetime
import os
import shutil
import sys
import time

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adaptation_report as report  # noqa: E402  (sibling modules of this script)
import adaptation_runs as runs  # noqa: E402
import correspondence as corr  # noqa: E402
import substitute_detector  # noqa: E402

import stylegan2_ada  # noqa: E402
from gda_core import demo_data  # noqa: E402
from gda_core import metrics as gda_metrics  # noqa: E402
from gda_core.generate import seed_latents  # noqa: E402
from gda_core.metrics.evaluation import quantize  # noqa: E402
from gda_core.metrics.fid import fid_from_features  # noqa: E402
from gda_core.metrics.kid import kernel_inception_distance  # noqa: E402
from gda_core.plugins import default_manager  # noqa: E402
from stylegan2_ada.checkpoint import sha256  # noqa: E402
from stylegan2_ada.dataset import ImageFolderDataset  # noqa: E402
from stylegan2_ada.detectors import DETECTORS, detector_path  # noqa: E402
from stylegan2_ada.errors import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ITERS = 1000            # 4 kimg at batch 4: the curves show where plain fine-tuning turns
QUICK_ITERS, QUICK_EVAL_EVERY = 500, 125   # --quick: four points per curve, under half an hour
DEFAULT_EVAL_EVERY = 250        # iterations between evaluation points (1 kimg at batch 4)
DEFAULT_SEEDS = '0,1,2'
METRICS = ['kid', 'fid', 'intra_lpips', 'scs']            # gda_core.metrics, per evaluation point
SOURCE_SAMPLE_SEED = 10_000     # z seeds of the source samples the detector trains on (no --source-data)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    plugins: tuple
    needs: tuple = ()           # detector files without which the method cannot run
    note: str = ''
    shots: int = None           # train on the first N target images only (None: --shots, or all)
    options: tuple = ()         # more `gda train` arguments (plugin options) of this row


CONFIGS = [
    Config('baseline', ()),
    Config('freezed', ('freezed',)),
    Config('freezed-b16', ('freezed',), options=('--freezed-layers', '5'),
           note="FreezeD's 256 px proportion at 32 px: D's b32 and b16 frozen, b8 and b4 train"),
    Config('diffaugment', ('diffaugment',)),
    Config('idc', ('idc',)),
    Config('patchd', ('patchd',)),
    Config('idc+patchd', ('idc', 'patchd'), note='CDC'),
    Config('rssa', ('rssa',), note='rssa alone trains against the core D'),
    Config('rssa+patchd', ('rssa', 'patchd'), note="RSSA's paper setting (CDC's D side)"),
    Config('genda', ('genda',)),
    Config('genda+diffaugment', ('genda', 'diffaugment')),
    Config('adafm', ('adafm',)),
    Config('disp', ('disp',), needs=('vgg16',), note="DISP-Vgg16: VGG16 fc7 priors"),
    Config('ewc', ('ewc',)),
    Config('adam', ('adam',), note='importance probing (500 iterations) in setup, cached'),
    Config('rick', ('rick',), note='official schedule: warm-up 250, Fisher every 50'),
    Config('baseline-1shot', (), shots=1, note='one shot: the first target image'),
    Config('genda-1shot', ('genda',), shots=1, note="GenDA's one-shot setting"),
]
CONFIG_NAMES = [config.name for config in CONFIGS]
QUICK_CONFIGS = 'baseline,idc+patchd,rssa+patchd,genda'   # --quick: the papers' headline methods



# -- planning ------------------------------------------------------------------------------------

def parse_configs(text):
    """Config objects from 'all' or 'baseline,idc+patchd,...' (any '+' combination of plugins)."""
    if text in (None, '', 'all'):
        return list(CONFIGS)
    known = {config.name: config for config in CONFIGS}
    result = []
    for name in [part.strip() for part in text.split(',') if part.strip()]:
        if name in known:
            result.append(known[name])
        elif 'baseline' in name.split('+') or not all(name.split('+')):
            raise UserError(f'--configs: cannot read {name!r}; give names like baseline,idc,idc+patchd')
        else:
            plugins = tuple(name.split('+'))
            result.append(Config(name, plugins, needs=('vgg16',) if 'disp' in plugins else ()))
    if not result:
        raise UserError('--configs is empty; give "all" or names like baseline,idc+patchd')
    return result


def detector_available(name):
    """Whether NVIDIA's detector file is here (option, variable or cache), without downloading."""
    try:
        detector_path(name, allow_download=False)
        return True
    except UserError:
        return False


def plan(configs, installed, broken, available):
    """[(config, status, notes)]: status 'run', 'skipped: ...' or 'not run: needs ...'."""
    planned = []
    for config in configs:
        missing = [name for name in config.plugins if name not in installed]
        notes = [config.note] if config.note else []
        if missing:
            why = '; '.join(f'{name} failed to load ({broken[name]})' if name in broken
                            else f'plugin {name} is not installed' for name in missing)
            planned.append((config, f'skipped: {why}', notes))
            continue
        lacking = [name for name in config.needs if not available(name)]
        if lacking:
            files = ', '.join(f'{DETECTORS[name].file} ({DETECTORS[name].purpose.split(",")[0]})'
                              for name in lacking)
            planned.append((config, f'not run: needs {files}, not available offline', notes))
            continue
        if 'rssa' in config.plugins:
            notes.append('targets inverted once by `gda invert`, codes shared by the rssa rows'
                         + ('' if available('vgg16') else ', with MSE only (vgg16.pt unavailable)'))
        planned.append((config, 'run', notes))
    return planned


# -- training runs: adaptation_runs.py; the report: adaptation_report.py --------------------------

# -- the substitute detector and the metrics -----------------------------------------------------

def dataset_images(path):
    dataset = ImageFolderDataset(path)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))
    return images[:, :1].repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


@torch.no_grad()
def detector_features(detector, images):
    """The detector's embedding (FID/KID features) of uint8 images, as float64 numpy."""
    return detector(images.float(), return_features=True).double().numpy()


def kid_fid(features, reference):
    """{kid, fid} of one feature set against another."""
    return dict(kid=kernel_inception_distance(features, reference),
                fid=fid_from_features(features, reference))


@torch.no_grad()
def source_samples(source, count, device='cpu'):
    """uint8 samples of the source generator (fixed seeds, constant noise)."""
    loaded = stylegan2_ada.load(source)
    G = (loaded.get('G_ema') or loaded['G']).to(device).eval()
    z = seed_latents(range(SOURCE_SAMPLE_SEED, SOURCE_SAMPLE_SEED + count), G.z_dim).to(device)
    c = torch.zeros([count, G.c_dim], device=device)
    images = torch.cat([quantize(G(zz, cc, noise_mode='const')).cpu()
                        for zz, cc in zip(z.split(64), c.split(64))])
    return images[:, :1].repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def build_detector(opts, log):
    """The substitute detector for these domains (cached), and its description. It learns from the
    source domain's real images (--source-data; without them, as many source samples) and the
    target domain's (the shots and the held-out images), without labels."""
    target, heldout = dataset_images(opts['data']), dataset_images(opts['heldout'])
    if opts['source_data']:
        source_domain, kind = dataset_images(opts['source_data']), 'source_images'
    else:
        source_domain, kind = source_samples(opts['source'], len(target) + len(heldout)), 'source_samples'
    images = torch.cat([target, heldout, source_domain])
    settings = dict(steps=opts['detector_steps'], views=opts['detector_views'])
    encoder, info = substitute_detector.load_or_train(images, seed=opts['detector_seed'],
                                                      use_cache=opts['cache'], log=log, **settings)
    info.update(description=substitute_detector.DESCRIPTION,
                limits=substitute_detector.limits(opts['detector_views']),
                training_images={'target': len(target), 'heldout': len(heldout), kind: len(source_domain)})
    return encoder, info


def build_content_encoder(opts, paired, log):
    """The correspondence encoder (cached): the substitute detector's recipe plus cross-style pairs
    of the even-numbered paired items as positives, so it sees the same emoji through both styles;
    its retrieval is measured on the odd-numbered items it never paired. (encoder, info)."""
    sources, targets = paired
    count = len(sources)
    images = torch.cat([sources, targets])
    trained = torch.arange(0, count, 2)
    pairs = torch.stack([trained, trained + count], 1)
    encoder, info = substitute_detector.load_or_train(images, seed=opts['detector_seed'], pairs=pairs,
                                                      use_cache=opts['cache'], log=log,
                                                      steps=opts['detector_steps'],
                                                      views='geometry')   # colours tie the styles
    unseen = torch.arange(1, count, 2)
    info = {k: v for k, v in info.items() if k != 'cached'}
    info.update(paired_items=count, pairs_trained=len(trained),
                retrieval_unseen=corr.retrieval(encoder, sources[unseen], targets[unseen]))
    return encoder, info


def metric_options(opts, detector, seed):
    return dict(detector_paths=dict(inception=detector, vgg16=detector), seed=seed,
                num_gen=dict(kid=opts['num_gen'], fid=opts['num_gen'],
                             intra_lpips=opts['num_gen'], scs=opts['num_pairs']),
                batch=64, use_cache=opts['cache'], device='cpu')


def results_of(records):
    values = {}
    for name, record in records.items():
        values.update(record['results'])
        if name == 'intra_lpips':
            values['intra_lpips_clusters'] = record['protocol']['clusters_used']
    return values


def snapshot_scorer(opts, detector, correspondence, data_of_seed=None):
    """evaluate(snapshot, seed) -> every number of one evaluation point."""
    def evaluate(snapshot, seed, train_data=None):
        start = time.time()
        records = gda_metrics.evaluate_network(snapshot, METRICS, data=opts['heldout'],
                                               train_data=train_data or opts['data'],
                                               **metric_options(opts, detector, seed))
        values = results_of(records)
        if correspondence is not None:
            values['correspondence'] = correspondence.of_snapshot(snapshot)
        values['eval_s'] = time.time() - start
        return values
    return evaluate


def reference_rows(opts, detector, correspondence, log, configs=()):
    """What the detector says about fixed sets: the source unadapted, the shots themselves, two
    halves of the held-out set (the noise floor of this reference set) and, given --source-data,
    the source domain's real images (the domain gap). Configurations that
    train on fewer shots (`configs`) also get the source's intra-LPIPS clustered by their shots,
    their curves' starting point (`source_by_config`)."""
    held = detector_features(detector, dataset_images(opts['heldout']))
    shots = detector_features(detector, dataset_images(opts['data']))
    rows = dict(shots=kid_fid(shots, held), heldout_halves=kid_fid(held[0::2], held[1::2]))
    if opts['source_data']:   # the domain gap itself: a perfect, unadapted source would score this
        real_source = detector_features(detector, dataset_images(opts['source_data']))
        rows['source_domain'] = kid_fid(real_source, held)
    log('Scoring the source generator (not adapted) ...')
    records = gda_metrics.evaluate_network(opts['source'], ['kid', 'fid', 'intra_lpips'],
                                           data=opts['heldout'], train_data=opts['data'],
                                           **metric_options(opts, detector, 0))
    rows['source'] = dict(results_of(records), scs=1.0)
    if opts['source_data']:
        records = gda_metrics.evaluate_network(opts['source'], ['kid', 'fid'], data=opts['source_data'],
                                               **metric_options(opts, detector, 0))
        rows['source_vs_source_domain'] = results_of(records)
    if correspondence is not None:
        rows['source'].update(correspondence.of_source(opts['source']))
    by_data = {}
    for config in configs:
        target = opts['data_of'](config)
        if target != opts['data'] and target not in by_data:
            records = gda_metrics.evaluate_network(opts['source'], ['intra_lpips'],
                                                   data=opts['heldout'], train_data=target,
                                                   **metric_options(opts, detector, 0))
            by_data[target] = results_of(records)
        if target in by_data:
            rows.setdefault('source_by_config', {})[config.name] = by_data[target]
    return rows


# -- command -------------------------------------------------------------------------------------

def command_line(ctx, script='benchmarks/adaptation.py'):
    """The script's command with the options given explicitly (what reproduces the table)."""
    parts = ['python ' + script]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        flag = param.opts[0]
        if param.is_flag:
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return ' '.join(parts)


def default_source():
    if demo_data.has_source_model():
        return demo_data.SOURCE_MODEL
    raise click.UsageError('the bundled demo source generator is not shipped in this checkout yet; '
                           'pass --source SNAPSHOT.pkl (e.g. a snapshot of examples/demo/train_source.sh)')


def parse_seeds(text):
    try:
        seeds = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise click.BadParameter(f'{text!r} is not a comma list of integers, e.g. 0,1,2') from None
    if not seeds:
        raise click.BadParameter('give at least one seed, e.g. 0')
    return seeds


def budget(quick, configs, seeds, iters, eval_every):
    """(configs, seeds, iters, eval_every): what was given, else --quick's or the full table's."""
    return (configs or (QUICK_CONFIGS if quick else 'all'), seeds or ('0' if quick else DEFAULT_SEEDS),
            iters or (QUICK_ITERS if quick else DEFAULT_ITERS),
            eval_every or (QUICK_EVAL_EVERY if quick else DEFAULT_EVAL_EVERY))


def shot_folder(data, shots, workdir):
    """A folder with the first `shots` images of `data` (in the dataset's order): the few-shot
    training set of rows that use fewer images than given."""
    dataset = ImageFolderDataset(data)
    if shots >= dataset.image_count:
        return data
    folder = os.path.join(workdir, f'target-{shots}shot')
    os.makedirs(folder, exist_ok=True)
    for index in range(shots):
        pixels = dataset[index][0].transpose(1, 2, 0)
        image = PIL.Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        image.save(os.path.join(folder, f'{index:04d}.png'))
    return folder


def paired_sets(data, heldout, source_data, pairs):
    """(source images, target images) of the same items for correspondence, or None: --pairs when
    given, else the shipped Noto/Twemoji pairs when the protocol is the shipped one."""
    if pairs:
        source_path, target_path = pairs.split(',', 1)
        return corr.dataset_pairs(source_path, target_path)[:2]
    shipped = (os.path.abspath(data) == os.path.abspath(demo_data.TARGET_DIR)
               and os.path.abspath(heldout) == os.path.abspath(demo_data.HELDOUT_ZIP)
               and os.path.abspath(source_data or demo_data.SOURCE_ZIP) == os.path.abspath(demo_data.SOURCE_ZIP))
    return corr.shipped_pairs()[:2] if shipped else None


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--source', help='32 px source network [default: the bundled demo source]', metavar='PKL')
@click.option('--target', '--data', 'data', default=demo_data.TARGET_DIR, show_default='the 10 bundled Twemoji shots', help='Few-shot target images (folder or zip)', metavar='PATH')
@click.option('--heldout', default=demo_data.HELDOUT_ZIP, show_default='the 3,776 held-out Twemoji emoji', help='Reference images of the target domain for the metrics (folder or zip)', metavar='PATH')
@click.option('--source-data', help='Real images of the source domain for the detector [default: the bundled Noto set with the bundled target; else samples of the source]', metavar='PATH')
@click.option('--pairs', help='SRC,TGT: the same items in both domains, same order, for correspondence [default: the bundled Noto/Twemoji pairs]', metavar='SRC,TGT')
@click.option('--shots', type=click.IntRange(min=1), help='Train on the first N target images [default: all]')
@click.option('--configs', help=f'Comma list of {", ".join(CONFIG_NAMES)} or any plugin+plugin combination [default: all; --quick: {QUICK_CONFIGS}]')
@click.option('--quick', is_flag=True, help=f'The headline methods ({QUICK_CONFIGS}), one seed: a first look in about half an hour on 2 cores')
@click.option('--iters', type=click.IntRange(min=1), help=f'Training iterations per run (batch {runs.BATCH}) [default: {DEFAULT_ITERS}; --quick: {QUICK_ITERS}]')
@click.option('--eval-every', type=click.IntRange(min=1), help=f'Iterations between evaluation points (the curves) [default: {DEFAULT_EVAL_EVERY}; --quick: {QUICK_EVAL_EVERY}]')
@click.option('--table-at', type=click.IntRange(min=1), help='Iteration the table reports [default: --iters]')
@click.option('--seeds', help=f'Comma list of seeds (training and metrics); rows average over them [default: {DEFAULT_SEEDS}; --quick: 0]')
@click.option('--num-gen', type=click.IntRange(min=2), default=1000, show_default=True, help='Generated images for KID, FID and intra-LPIPS')
@click.option('--num-pairs', type=click.IntRange(min=1), default=500, show_default=True, help='Source/adapted pairs for SCS and correspondence')
@click.option('--detector-steps', type=click.IntRange(min=1), default=substitute_detector.DEFAULTS['steps'], show_default=True, help='Training steps of the substitute detector')
@click.option('--detector-views', type=click.Choice(substitute_detector.VIEWS), default=substitute_detector.DEFAULTS['views'], show_default=True, help="What the detector's training views change besides geometry: colour (hue, saturation, grey: it must see shapes) or geometry (hue kept: it reads mostly colours; the tables before December 2026)")
@click.option('--detector-seed', type=int, default=0, show_default=True, help='Seed of the substitute detector')
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True, help='CPU threads per training run (more threads on a busy machine are much slower)')
@click.option('--jobs', type=click.IntRange(min=1), default=1, show_default=True, help='Training runs at once (subprocesses)')
@click.option('--device', help='Torch device of the training runs [default: gda train\'s]', metavar='DEV')
@click.option('--workdir', default=os.path.join(ROOT, 'build', 'benchmark-adaptation'), show_default='build/benchmark-adaptation', help='Where the runs go (finished runs there are reused)', metavar='DIR')
@click.option('--out', default=os.path.join(ROOT, 'benchmarks', 'results'), show_default='benchmarks/results', help='Where adaptation.json, .md and the curves go', metavar='DIR')
@click.option('--in-process', is_flag=True, help='Run gda train inside this process (no per-run memory figure)')
@click.option('--smoke', is_flag=True, help='Shorten plugins\' setup work (rssa inversion, ewc Fisher): CI only')
@click.option('--no-cache', 'cache', is_flag=True, flag_value=False, default=True, help='Retrain the detector and recompute reference features')
def main(source, data, heldout, source_data, pairs, shots, configs, quick, iters, eval_every, table_at,
         seeds, num_gen, num_pairs, detector_steps, detector_views, detector_seed, threads, jobs,
         device, workdir, out, in_process, smoke, cache):
    """Fine-tune a source with every method plugin and score the results along training (see the
    module docstring)."""
    started = time.time()
    load_start = report.load_average()
    configs, seeds, iters, eval_every = budget(quick, configs, seeds, iters, eval_every)
    seeds = parse_seeds(seeds)
    source = source or default_source()
    for path, flag in ((source, '--source'), (data, '--target'), (heldout, '--heldout'),
                       (source_data, '--source-data')):
        if path is not None and not os.path.exists(path):
            raise click.BadParameter(f'{path} does not exist', param_hint=flag)
    if pairs is not None and (pairs.count(',') != 1 or not all(os.path.exists(p) for p in pairs.split(','))):
        raise click.BadParameter(f'{pairs!r}: give two existing datasets as SRC,TGT', param_hint='--pairs')
    if jobs > 1 and in_process:
        raise click.UsageError('--jobs runs separate processes; drop --in-process or --jobs')
    table_at = table_at or iters
    if table_at not in runs.eval_points(iters, eval_every):
        raise click.BadParameter(f'{table_at} is not an evaluation point (every {eval_every} up to '
                                 f'{iters})', param_hint='--table-at')
    try:
        chosen = parse_configs(configs)
    except UserError as error:
        raise click.BadParameter(str(error), param_hint='--configs') from None
    torch.set_num_threads(threads)
    os.makedirs(workdir, exist_ok=True)
    given_source = source
    source = os.path.join(workdir, 'source.pkl')   # a copy: a training run may rotate the original
    if not os.path.isfile(source) or sha256(source) != sha256(given_source):
        shutil.copyfile(given_source, source)
    if source_data is None and os.path.abspath(data) == os.path.abspath(demo_data.TARGET_DIR):
        source_data = demo_data.SOURCE_ZIP
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    data_of_shots = {}

    def data_of(config):
        count = config.shots or shots
        if count is None:
            return data
        if count not in data_of_shots:
            data_of_shots[count] = shot_folder(data, count, workdir)
        return data_of_shots[count]

    opts = dict(source=source, source_sha256=sha256(source), data=data, heldout=heldout,
                source_data=source_data, iters=iters, eval_every=eval_every, num_gen=num_gen,
                num_pairs=num_pairs, detector_steps=detector_steps, detector_views=detector_views,
                detector_seed=detector_seed, threads=threads, device=device, workdir=workdir,
                in_process=in_process, smoke=smoke, cache=cache, data_of=data_of, rssa_codes={})
    manager = default_manager()
    planned = plan(chosen, set(manager.plugins), {name: b.error for name, b in manager.broken.items()},
                   detector_available)
    for config, status, _ in planned:
        if status != 'run':
            log(f'{config.name}: {status}')

    try:
        detector, detector_info = build_detector(opts, log)
        opts['detector_key'] = detector_info['key']
        paired = paired_sets(data, heldout, source_data, pairs)
        scorer, content_info = None, None
        if paired is not None:
            detector_info['retrieval'] = corr.retrieval(detector, *paired)
            content, content_info = build_content_encoder(opts, paired, log)
            scorer = corr.Correspondence(content, *paired, count=num_pairs)
        reference = reference_rows(opts, detector, scorer, log,
                                   [config for config, status, _ in planned if status == 'run'])
    except (UserError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    evaluate = snapshot_scorer(opts, detector, scorer)

    jobs_list = [(config, seed) for config, status, _ in planned if status == 'run' for seed in seeds]
    inversion = {}

    def invert(target_data):
        """rssa's codes of one target set (once for every rssa row on it)."""
        codes, inversion[target_data] = runs.invert_targets(opts, target_data, log)
        if codes is None:
            log(f'rssa: the inversion failed ({inversion[target_data]["status"]}); the rssa rows invert by themselves')
        else:
            opts['rssa_codes'][target_data] = codes

    records = []
    command = command_line(click.get_current_context())

    def save():
        """adaptation.json, .md and the curves from the runs so far (written after every run, so
        an interrupted benchmark keeps what it finished); the result."""
        result = dict(
            command=command, date=datetime.datetime.now().isoformat(timespec='seconds'),
            protocol=dict(source=given_source, source_sha256=opts['source_sha256'], data=data,
                          heldout=heldout, source_data=source_data, pairs=pairs, shots=shots,
                          target_images=len(ImageFolderDataset(data)),
                          heldout_images=len(ImageFolderDataset(heldout)), iters=iters,
                          eval_every=eval_every, table_at=table_at, batch=runs.BATCH,
                          seeds=seeds, threads=threads, jobs=jobs, in_process=in_process, smoke=smoke,
                          num_gen=num_gen, num_pairs=num_pairs, metrics=report.COLUMNS, machine=report.machine(),
                          load_start=load_start, load_end=report.load_average()),
            detector={k: v for k, v in detector_info.items() if k != 'cached'},
            content_encoder=content_info,
            reference=reference, rows=report.summarise(records, planned, table_at), runs=records,
            rssa_inversion=inversion or None, runtime_s=time.time() - started)
        os.makedirs(out, exist_ok=True)
        result['curves'] = report.write_curves(out, result)
        report.write_results(out, 'adaptation', result, report.markdown(result))
        return result

    def scored(snapshot, seed, config):
        return evaluate(snapshot, seed, train_data=data_of(config))

    def finish(record):
        train = record.get('train') or {}
        last = (record.get('evals') or [{}])[-1]
        scores = ', '.join(f'{k} {v:.4f}' for k, v in last.items() if k in report.COLUMNS)
        log(f'{record["config"]} seed {record["seed"]}: {record["status"]}'
            + (f'; {train["sec_per_kimg"]:.0f} sec/kimg' if train.get('sec_per_kimg') else '')
            + (f'; at {last["iteration"]}: {scores}' if scores else ''))
        records.append(record)
        save()

    def run(config, seed, pending):
        if 'rssa' in config.plugins:
            pending[data_of(config)].result()   # its targets' inversion
        log(f'Training {config.name} (seed {seed}, {iters} iterations, scored every {eval_every}) ...')
        return runs.train_one(config, seed, opts, lambda snapshot, s: scored(snapshot, s, config))

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(jobs) as pool:
        # The inversions first, the rssa rows last: with --jobs 2 the other rows train meanwhile.
        pending = {target_data: pool.submit(invert, target_data) for target_data in
                   sorted({data_of(config) for config, _ in jobs_list if 'rssa' in config.plugins})}
        ordered = sorted(jobs_list, key=lambda job: 'rssa' in job[0].plugins)
        for future in [pool.submit(run, config, seed, pending) for config, seed in ordered]:
            finish(future.result())

    result = save()
    click.echo(report.markdown(result))
    failed = [row['config'] for row in result['rows'] if row['status'] != 'ok' and not
              row['status'].startswith(('skipped', 'not run'))]
    if failed:
        raise click.ClickException(f'these configurations failed: {", ".join(failed)} (see their '
                                   f'train.log under {os.path.join(workdir, "runs")})')


if __name__ == '__main__':
    main()
