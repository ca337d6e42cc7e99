"""How long `gda` takes before doing anything: --help of every command, `gda plugins`, usage errors.

Each case runs N times as a fresh `python -m gda_core ...` process (what a user's shell does, minus
the console-script shim) and the median wall time is kept: the machine is shared, so the median is
the honest figure, the minimum is listed too. `--tree DIR` measures another checkout instead (e.g.
`git archive <commit> | tar -x -C DIR` for a before/after comparison); the installed plugins are
those of the environment either way. Issue 23's goal: every case under 1 s.

    python benchmarks/startup.py [--runs 7] [--label after] [--tree DIR] \
        [--out benchmarks/results/startup.json]

Results are merged into --out under --label, and a table of every label is written beside it (.md).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from machine_info import cpu_model  # noqa: E402

COMMANDS = ['train', 'generate', 'export', 'plugins', 'info', 'dataset', 'metrics', 'report',
            'invert']
CASES = ([['--help']] + [[name, '--help'] for name in COMMANDS] + [['plugins']]
         + [['train', '--no-such-option'], ['generate']])   # the last two: usage errors (exit 2)
GOAL_S = 1.0


def run_once(args, tree):
    """Wall seconds and exit status of one fresh `python -m gda_core ARGS`."""
    env = dict(os.environ)
    env.pop('GDA_DISABLE_PLUGIN_AUTOLOAD', None)
    if tree:
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [tree, env.get('PYTHONPATH')]))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-m', 'gda_core', *args], env=env, cwd=tree or None,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, result.returncode


def measure(args, runs, tree):
    """Median and minimum of `runs` fresh processes, with the exit status they gave."""
    times, codes = [], set()
    for _ in range(runs):
        seconds, code = run_once(args, tree)
        times.append(seconds)
        codes.add(code)
    return dict(median_s=round(statistics.median(times), 3), min_s=round(min(times), 3),
                exit_codes=sorted(codes))


def load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def markdown(results):
    """A table: one row per case, median (min) seconds per label."""
    labels = list(results['labels'])
    lines = [f'# gda start-up time ({results["machine"]})', '',
             'Median (min) wall seconds of fresh `python -m gda_core ...` processes; goal < '
             f'{GOAL_S:g} s. Made by `python benchmarks/startup.py` (see its docstring).', '']
    for label in labels:
        info = results['labels'][label]
        lines.append(f'- **{label}**: {info["runs"]} runs per case, tree {info["tree"]}, '
                     f'load average before {info["load_average"]}')
    lines += ['', '| command | ' + ' | '.join(labels) + ' |', '|---' * (len(labels) + 1) + '|']
    for case in results['labels'][labels[-1]]['cases']:
        cells = []
        for label in labels:
            found = results['labels'][label]['cases'].get(case)
            cells.append('n/a' if found is None else f'{found["median_s"]:.2f} ({found["min_s"]:.2f})')
        lines.append(f'| `gda {case}` | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=7, help='fresh processes per case')
    parser.add_argument('--label', default='after', help='name of this measurement in the results')
    parser.add_argument('--tree', default=None, help='checkout to measure (default: the installed one)')
    parser.add_argument('--out', default='benchmarks/results/startup.json')
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else dict(labels={})
    results['machine'] = f'{cpu_model()}, {os.cpu_count()} cores'
    entry = dict(runs=args.runs, tree=args.tree or 'installed', load_average=load_average(), cases={})
    for case in CASES:
        entry['cases'][' '.join(case)] = found = measure(case, args.runs, args.tree)
        print(f'gda {" ".join(case):<28} median {found["median_s"]:.3f} s  min {found["min_s"]:.3f} s'
              f'  exit {found["exit_codes"]}', flush=True)
    results['labels'][args.label] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + '\n')
    out.with_suffix('.md').write_text(markdown(results))
    print(f'Wrote {out} and {out.with_suffix(".md")}')


if __name__ == '__main__':
    main()
