"""benchmarks/memory_phases.py: the tiny dry run measures every phase of an idc+patchd iteration,
profiles it, and leaves the training loop as it found it."""

import json
import subprocess
import sys

import memory_phases  # by name: see conftest.py

from stylegan2_ada.loss import StyleGAN2Loss
from stylegan2_ada.training_loop import TrainingLoop


def test_tiny_run_records_each_phase_with_its_peak_and_the_top_allocations(tmp_path):
    out = tmp_path / 'memory'
    subprocess.run([sys.executable, memory_phases.__file__, '--tiny', '--iters', '1', '--profile',
                    '--workdir', str(tmp_path / 'work'), '--out', str(out)],
                   check=True, capture_output=True, text=True)
    result = json.loads(out.with_suffix('.json').read_text())
    phases = {row['phase']: row for row in result['phases']}
    assert {'Gmain', 'Greg', 'Dmain', 'Dreg', 'G_terms', 'optimizer_step'} <= set(phases)
    for row in phases.values():
        assert row['peak_mb'] >= row['rss_before_mb'] > 100 and row['added_mb'] >= 0
    labels = {row['op'] for row in result['allocations'] if row['op'].startswith('phase:')}
    assert {'phase:Gmain', 'phase:Dreg', 'phase:G_terms'} <= labels
    assert any(row['op'].startswith('aten::') and row['self_mb'] > 0 for row in result['allocations'])
    assert '| 0 | Dreg | 1 |' in out.with_suffix('.md').read_text()


def test_instrumenting_measures_and_then_restores_the_loop():
    originals = (StyleGAN2Loss.accumulate_gradients, StyleGAN2Loss.accumulate_g_loss_terms,
                 TrainingLoop._optimizer_step, TrainingLoop.step)
    restore = memory_phases.instrument(memory_phases.PhaseMeter(), dict(profiler=None))
    assert StyleGAN2Loss.accumulate_gradients is not originals[0]
    restore()
    assert (StyleGAN2Loss.accumulate_gradients, StyleGAN2Loss.accumulate_g_loss_terms,
            TrainingLoop._optimizer_step, TrainingLoop.step) == originals


def test_phase_table_keeps_the_largest_peak_of_repeated_calls():
    records = [dict(iteration=0, phase='optimizer_step', rss_before_mb=100.0, peak_mb=150.0,
                    rss_after_mb=120.0),
               dict(iteration=0, phase='optimizer_step', rss_before_mb=120.0, peak_mb=200.0,
                    rss_after_mb=130.0)]
    (row,) = memory_phases.phase_table(records)
    assert row['calls'] == 2 and row['peak_mb'] == 200.0 and row['added_mb'] == 80.0
    assert row['rss_before_mb'] == 100.0
