"""metric-<name>.jsonl in a run directory: one JSON line per evaluated snapshot, appended.

Line: {metric, results: {key: value}, snapshot, kimg, iteration, protocol: {...}, total_time,
shared_time, timestamp}. Readers keep the last line per snapshot, so re-evaluating replaces.
"""

import json
import os
import re

SNAPSHOT_RE = re.compile(r'^network-snapshot-(\d+)\.pkl$')


def record_path(run_dir, name):
    return os.path.join(run_dir, f'metric-{name}.jsonl')


def append_record(run_dir, record):
    with open(record_path(run_dir, record['metric']), 'a') as file:
        file.write(json.dumps(record) + '\n')


def read_records(path):
    """Records of one metric file, the last per snapshot, ordered by kimg (unreadable lines skipped)."""
    latest = {}
    with open(path) as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get('results'), dict):
                latest[record.get('snapshot') or len(latest)] = record
    return sorted(latest.values(), key=lambda r: (r.get('kimg') is None, r.get('kimg') or 0))


def metric_files(run_dir):
    """{metric name: path} of the run's metric-<name>.jsonl files."""
    found = {}
    for entry in sorted(os.listdir(run_dir)):
        match = re.match(r'^metric-(.+)\.jsonl$', entry)
        if match:
            found[match.group(1)] = os.path.join(run_dir, entry)
    return found


def snapshots(run_dir):
    """network-snapshot-*.pkl files of a run directory, oldest first."""
    names = [name for name in os.listdir(run_dir) if SNAPSHOT_RE.match(name)]
    return [os.path.join(run_dir, name) for name in sorted(names, key=lambda n: int(SNAPSHOT_RE.match(n).group(1)))]


def snapshot_kimg(path, data=None):
    """kimg of a snapshot: the gda loop state's cur_nimg, else the number in NVIDIA's file name."""
    loop = ((data or {}).get('gda') or {}).get('loop') or {}
    if 'cur_nimg' in loop:
        return int(loop['cur_nimg']) / 1000
    match = SNAPSHOT_RE.match(os.path.basename(path))
    return float(match.group(1)) if match else None
