"""The third-party example: pip-installed (offline), trained with, generated from, uninstalled.

It is installed into a throwaway virtual environment layered on this one (a .pth file adds this
environment's site-packages), so the test does a real `pip install` and `pip uninstall` without
touching the environment other tests run in.
"""

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import textwrap

import pytest

from gda_testkit import plugins as HP


EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'gda-plugin-example'

RUN_GDA = textwrap.dedent('''
    import json, sys
    from click.testing import CliRunner
    from gda_core.cli import main
    results = [list((r.exit_code, r.output)) for r in
               (CliRunner().invoke(main, args) for args in json.loads(sys.argv[1]))]
    print(json.dumps(results))
''')


@pytest.fixture
def child_env(tmp_path):
    """A venv without pip whose site-packages chain to this environment's."""
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    child_site = subprocess.run([str(python), '-c', 'import site; print(site.getsitepackages()[0])'],
                                check=True, capture_output=True, text=True).stdout.strip()
    parents = '; '.join(f'site.addsitedir({path!r})' for path in site.getsitepackages())
    pathlib.Path(child_site, '_gda_test_parent.pth').write_text(f'import site; {parents}\n')
    return python


def pip(python, *args):
    return subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), *args,
                           '--disable-pip-version-check'], capture_output=True, text=True)


def gda(python, *commands):
    """Run several gda commands in one process of the child environment: [(exit code, output)]."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('GDA_DISABLE_PLUGIN_AUTOLOAD', None)
    out = subprocess.run([str(python), '-c', RUN_GDA, json.dumps([[str(a) for a in c] for c in commands])],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_the_example_plugin_installs_trains_generates_and_uninstalls(child_env, tiny, tmp_path):
    source_copy = tmp_path / 'gda-plugin-example'
    shutil.copytree(EXAMPLE, source_copy)   # pip builds in the source folder: keep the repo clean
    installed = pip(child_env, 'install', '--no-deps', '--no-build-isolation', '--no-index', str(source_copy))
    assert installed.returncode == 0, installed.stderr

    data, source = tiny
    runs = tmp_path / 'runs'
    listing, training = gda(
        child_env, ['plugins', '--json'],
        ['train', '--data', data, '--source', source, '--outdir', runs, '--plugin', 'example',
         '--example-weight', '2', '--iters', '2', '--tick', '0.004', '--snap', '1'])
    example = next(item for item in json.loads(listing[1]) if item['name'] == 'example')
    assert example['distribution'] == 'gda-plugin-example' and example['status'] == 'ok'
    assert [o['flag'] for o in example['options']] == ['--example-weight', '--example-samples']
    assert training[0] == 0, training[1]
    run_dir = runs / os.listdir(runs)[0]
    ticks = [json.loads(line) for line in open(run_dir / 'stats.jsonl')]
    assert all(tick['losses']['Loss/G/example/colour'] > 0 for tick in ticks)
    snapshot = HP.snapshot_path(run_dir)

    generated, = gda(child_env, ['generate', '--network', snapshot, '--seeds', '0-1', '--pairs',
                                 '--outdir', tmp_path / 'out'])
    assert generated[0] == 0, generated[1]
    assert sorted(os.listdir(tmp_path / 'out')) == ['seed0000-pair.png', 'seed0001-pair.png']

    removed = pip(child_env, 'uninstall', '-y', 'gda-plugin-example')
    assert removed.returncode == 0, removed.stderr
    missing, = gda(child_env, ['generate', '--network', snapshot, '--outdir', tmp_path / 'again'])
    assert missing[0] == 2
    assert "plugin 'example' from distribution 'gda-plugin-example' 0.1.0, which is not installed" in missing[1]
