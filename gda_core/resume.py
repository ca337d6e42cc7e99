"""`gda train --resume RUN_DIR`: continue a run exactly from its newest valid snapshot.

NVIDIA's --resume restarts kimg and the ADA p; ours restores everything the loop needs
(TrainingLoop.loop_state) plus the plugins' state_dict, the anchors and the networks, so that
N iterations straight and N/2 + resume + N/2 give identical weights. The run's options come
from RUN_DIR/training_options.json: the command line may only repeat them, or change the few that
say when it stops, how often it reports, and where and in which CPU precision it runs (CHANGEABLE;
a resume that changes the device or --cpu-bf16 goes on exactly, in other arithmetic). A snapshot
that cannot be read (a kill while it was written with an older gda, a full disk, a copy gone
wrong) is skipped with a warning naming it.
"""

import json
import os
import re
import zipfile

from stylegan2_ada.checkpoint.atomic import atomic_write, stale_temp_files
from stylegan2_ada.checkpoint.snapshot import is_snapshot, read_snapshot, torch_load
from stylegan2_ada.errors import UserError
from stylegan2_ada.training_options import (ARCH_OPTIONS, RENAMES, SOURCE_ARCH_KEYS,
                                            TrainingOptions)

OPTIONS_FILE = 'training_options.json'
SNAPSHOT_RE = re.compile(r'^network-snapshot-(\d+)\.pkl$')
LOOP_KEYS = ('cur_nimg', 'iteration', 'tick', 'sampler_position', 'optimizers', 'rng',
             'core_options')

# Options a resumed run may change: when it stops, how often it logs and snapshots, where and in
# which CPU precision it runs.
CHANGEABLE = ('kimg', 'iters', 'tick', 'snap', 'metrics', 'device', 'gpus', 'cpu_bf16')
# Options that name a new run directory: meaningless with --resume.
NEW_RUN_ONLY = ('outdir', 'desc')
TOP_LEVEL = ('data', 'source')


def _flag(name):
    return '--' + name.replace('_', '-')


def read_run_options(run_dir):
    """RUN_DIR's training_options.json, with one-line errors for the usual mistakes."""
    if not os.path.isdir(run_dir):
        raise UserError(f'--resume {run_dir}: no such run directory; give the directory a '
                        f'`gda train` run wrote (e.g. runs/00000-...)')
    path = os.path.join(run_dir, OPTIONS_FILE)
    if not os.path.isfile(path):
        raise UserError(f'--resume {run_dir}: it holds no {OPTIONS_FILE}, so it is not a gda run '
                        f'directory; give the directory `gda train` wrote')
    try:
        with open(path) as file:
            saved = json.load(file)
    except (OSError, ValueError) as error:
        raise UserError(f'--resume {run_dir}: cannot read {OPTIONS_FILE} ({error})') from None
    if not isinstance(saved.get('options'), dict) or 'source' not in saved:
        raise UserError(f'--resume {run_dir}: {OPTIONS_FILE} lacks the resolved options; the run '
                        f'was not written by `gda train`')
    return saved


def saved_value(saved, name):
    """The run's value of the command-line option `name`."""
    if name in TOP_LEVEL:
        return saved[name]
    if name in ('mirror', 'cond'):
        return bool(saved.get(name, False))
    if name == 'plugin':
        return [plugin['name'] for plugin in saved.get('plugins', [])]
    if name == 'gpus':
        return saved.get('gpus', 1)
    return saved['options'].get(RENAMES.get(name, name))


def _same(name, given, saved):
    if name in TOP_LEVEL and isinstance(given, str) and isinstance(saved, str):
        return given == saved or os.path.abspath(given) == os.path.abspath(saved)
    if isinstance(given, (list, tuple)) or isinstance(saved, (list, tuple)):
        return list(given or []) == list(saved or [])
    if isinstance(given, (int, float)) and not isinstance(given, bool) and \
            isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return float(given) == float(saved)
    return given == saved


def check_given(run_dir, saved, given, given_plugins):
    """UserError listing every command-line option that contradicts the run's own options."""
    conflicts = []
    for name, value in given.items():
        if name in CHANGEABLE or name in ('resume', 'dry_run'):
            continue
        if name in NEW_RUN_ONLY:
            conflicts.append(f'{_flag(name)} (a resumed run stays in {run_dir})')
            continue
        run_value = saved_value(saved, name)
        if not _same(name, value, run_value):
            shown = ' '.join(value) if isinstance(value, (list, tuple)) else value
            conflicts.append(f'{_flag(name)} {shown} (the run has {run_value!r})')
    plugins = {plugin['name']: plugin.get('options', {}) for plugin in saved.get('plugins', [])}
    for plugin, values in given_plugins.items():
        for key, value in values.items():
            flag = f'--{plugin}-{key}'.replace('_', '-')
            if plugin not in plugins:
                conflicts.append(f'{flag} (the run has no plugin {plugin!r})')
            elif not _same(key, value, plugins[plugin].get(key)):
                conflicts.append(f'{flag} {value} (the run has {plugins[plugin].get(key)!r})')
    if conflicts:
        raise UserError(f'--resume {run_dir} continues the run with its own options '
                        f'({OPTIONS_FILE}), but the command line changes {"; ".join(conflicts)}; '
                        f'drop them (only {", ".join(_flag(n) for n in CHANGEABLE)} may change)')


def resume_config(config, given, given_plugins):
    """The run's own configuration (as the CLI would have built it) with the allowed changes.

    `given` maps each core option set on the command line to its value, `given_plugins` each
    plugin option set on the command line. With --kimg or --iters given, those alone are the
    stop condition (the other one is dropped unless given too).
    """
    run_dir = config['resume']
    saved = read_run_options(run_dir)
    check_given(run_dir, saved, given, given_plugins)
    opts = TrainingOptions.from_record(saved['options'])
    options = opts.record()
    architecture = None
    if saved['source'] != 'none':   # the source's, recorded: not options to resolve again
        architecture = {key: options.pop(key) for key in SOURCE_ARCH_KEYS}
        options.pop('fmaps', None)
    if saved.get('option_origin', {}).get('batch_gpu', 'default') == 'default':
        options['batch_gpu'] = None   # derived from the process count: derive it again
    if 'kimg' in given or 'iters' in given:
        options['kimg'], options['iters'] = given.get('kimg'), given.get('iters')
    for name in ('tick', 'snap', 'cpu_bf16'):
        options[name] = given.get(name, options[name])
    changed = {name: given[name] for name in CHANGEABLE if name in given}
    recorded = {key: how for key, how in saved.get('option_origin', {}).items()
                if key not in changed and not (key == 'kimg' and 'iters' in changed)}
    return dict(outdir=os.path.dirname(os.path.abspath(run_dir)), data=saved['data'],
                source=saved['source'], desc=None, options=options,
                metrics=given.get('metrics', ','.join(saved.get('metrics') or [])) or None,
                mirror=bool(saved.get('mirror', False)), cond=bool(saved.get('cond', False)),
                source_g=saved.get('source_g'),
                device=given['device'] if 'device' in given else saved.get('device'),
                gpus=given.get('gpus'), default_gpus=saved.get('gpus', 1),
                plugins=[plugin['name'] for plugin in saved.get('plugins', [])],
                plugin_options={plugin['name']: dict(plugin.get('options', {}))
                                for plugin in saved.get('plugins', [])},
                resume=os.path.abspath(run_dir), resume_changed=changed,
                source_architecture=architecture, given_origin=recorded)


def check_resolved(run_dir, saved_options, opts, fine_tuning=False):
    """The re-resolved options (TrainingOptions) must be the run's own (bar the allowed
    changes). A fine-tuning run's architecture is its snapshot's (runs of older gda recorded the
    preset's there)."""
    ignore = set(CHANGEABLE) | {'batch_gpu'}
    if fine_tuning:
        ignore |= set(SOURCE_ARCH_KEYS) | {'fmaps'}
    saved_options = TrainingOptions.from_record(saved_options).record()
    opts = opts.record()
    differ = sorted(key for key in set(saved_options) | set(opts)
                    if key not in ignore and saved_options.get(key) != opts.get(key))
    if differ:
        described = ', '.join(f'{key} {saved_options.get(key)!r} -> {opts.get(key)!r}'
                              for key in differ)
        raise UserError(f'--resume {run_dir}: the run\'s options no longer resolve to the same '
                        f'values ({described}); was gda or a plugin changed since? resume with '
                        f'the versions that started the run')


# -- snapshots ----------------------------------------------------------------------------------------

def snapshot_candidates(run_dir):
    """network-snapshot-<kimg>.pkl files, newest first."""
    found = [(int(m.group(1)), name) for name in os.listdir(run_dir)
             if (m := SNAPSHOT_RE.match(name))]
    return [os.path.join(run_dir, name) for _, name in sorted(found, reverse=True)]


def check_archive(path):
    """torch.save files are zip archives with a CRC32 per record; torch.load does not check them,
    so a flipped byte would load silently. A truncated file has no central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f'not a complete archive ({error})') from None
    if bad is not None:
        raise UserError(f'its record {bad} fails its CRC check')


def read_resumable(path):
    """The snapshot at `path` with its networks rebuilt; UserError when it cannot serve a resume."""
    check_archive(path)
    data = torch_load(path)
    if not is_snapshot(data):
        raise UserError('not a gda snapshot')
    loop = data['gda'].get('loop') or {}
    missing = [key for key in LOOP_KEYS if key not in loop]
    if missing:
        raise UserError(f'it holds no loop state ({", ".join(missing)} missing)')
    try:
        snapshot = read_snapshot(data)
    except Exception as error:   # a damaged record fails in many ways; none is resumable
        raise UserError(f'its networks cannot be rebuilt ({error})') from None
    if any(snapshot.get(key) is None for key in ('G', 'D', 'G_ema')):
        raise UserError('it lacks G, D or G_ema')
    return snapshot


def newest_valid_snapshot(run_dir, warn):
    """(path, snapshot, skipped paths) of the newest snapshot that reads back whole; older ones
    are the fallback."""
    candidates = snapshot_candidates(run_dir)
    if not candidates:
        raise UserError(f'--resume {run_dir}: no network-snapshot-*.pkl there, nothing to resume '
                        f'(the run stopped before its first snapshot); start the run afresh')
    skipped = []
    for path in candidates:
        try:
            return path, read_resumable(path), skipped
        except UserError as error:
            reason = str(error).replace(f'cannot read {path}: ', '')
            warn(f'Warning: skipping {path}: {reason} (truncated or corrupt?); trying an older '
                 f'snapshot (if training goes on, it is renamed {os.path.basename(path)}.corrupt)')
            skipped.append(path)
    names = ', '.join(os.path.basename(path) for path in skipped)
    raise UserError(f'--resume {run_dir}: no valid snapshot ({names} cannot be read, left as '
                    f'they are); nothing to resume')


def restored_networks(snapshot, config, load_source):
    """(G, D, G_ema, frozen source G, source reference) as the snapshot saved them. A source G
    left out of the snapshot is loaded again from its reference and must match its sha256."""
    gda = snapshot['gda']
    source_info, source_G = gda.get('source'), gda.get('source_G')
    if source_G is None and config['source'] != 'none':
        data, source_G, _ = load_source(config['source'], config.get('source_g'))
        wanted = (source_info or {}).get('sha256')
        if wanted and data['origin']['sha256'] != wanted:
            raise UserError(f"--resume: the snapshot left out the source G and {config['source']} "
                            f'no longer has the sha256 the run started from; restore that file')
    return snapshot['G'], snapshot['D'], snapshot['G_ema'], source_G, source_info


# -- the run directory --------------------------------------------------------------------------------

def corrupt_name(path):
    """Where an unreadable snapshot is set aside: *.corrupt, *.corrupt.1, ... (never replacing
    one set aside before)."""
    candidate, number = path + '.corrupt', 0
    while os.path.exists(candidate):
        number += 1
        candidate = f'{path}.corrupt.{number}'
    return candidate


def tidy_run_dir(run_dir, iteration, skipped, log):
    """Before continuing at `iteration` (rank 0, and only when training goes on: a resume that
    stops before training changes nothing): set the unreadable snapshots aside (renamed *.corrupt,
    so that the next resume does not trip over them and the next snapshot does not replace them),
    remove temporary files of killed writers and the stats.jsonl ticks after the snapshot (they
    will be trained again), so that the files read as one uninterrupted run."""
    for path in skipped:
        target = corrupt_name(path)
        os.replace(path, target)
        log(f'Set {path} aside as {os.path.basename(target)}')
    for path in stale_temp_files(run_dir, '*'):
        os.remove(path)
        log(f'Removed {path}, left by a write that was interrupted')
    stats = os.path.join(run_dir, 'stats.jsonl')
    if not os.path.isfile(stats):
        return
    with open(stats) as file:
        lines = file.read().splitlines()
    kept = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue   # a line cut short by the kill
        if isinstance(entry, dict) and entry.get('iteration', 0) <= iteration:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_write(stats, 'w') as file:
            file.write(''.join(line + '\n' for line in kept))
        log(f'stats.jsonl: dropped {len(lines) - len(kept)} line(s) after iteration {iteration}, '
            f'which the resumed run trains again')


def record_resume(run_dir, opts, changed, snapshot_path, iteration, cur_nimg, processes):
    """training_options.json keeps the run's current options (a later resume starts from them)
    and lists each resume."""
    path = os.path.join(run_dir, OPTIONS_FILE)
    saved = read_run_options(run_dir)
    for key in ('kimg', 'iters', 'tick', 'snap'):
        if saved['options'].get(key) != getattr(opts, key):
            saved['options'][key] = getattr(opts, key)
            saved.setdefault('option_origin', {})[key] = 'command line (--resume)'
    saved['options']['batch_gpu'] = opts.batch_gpu
    if 'device' in changed:
        saved['device'] = changed['device']
    saved['gpus'] = processes
    saved.setdefault('resumes', []).append(dict(
        snapshot=os.path.basename(snapshot_path), iteration=iteration, kimg=cur_nimg / 1000,
        processes=processes, changed=changed))
    with atomic_write(path, 'w') as file:
        json.dump(saved, file, indent=2)


__all__ = ['resume_config', 'check_resolved', 'newest_valid_snapshot', 'restored_networks',
           'tidy_run_dir', 'record_resume', 'read_run_options', 'CHANGEABLE']
