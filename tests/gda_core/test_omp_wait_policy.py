"""Importing gda_core makes idle OpenMP threads sleep (unless the user chose otherwise)."""

import os
import subprocess
import sys

PROBE = 'import gda_core, os; print(os.environ["OMP_WAIT_POLICY"])'


def _policy(env):
    return subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_passive_by_default_and_the_users_choice_wins():
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    assert _policy(env) == 'PASSIVE'
    assert _policy(dict(env, OMP_WAIT_POLICY='ACTIVE')) == 'ACTIVE'
