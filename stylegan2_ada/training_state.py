"""What exact resume needs of a TrainingLoop, as tensors and plain values, and the snapshot file
that carries it.

The state holds counters, the data sampler's position, optimisers (plugin groups included),
plugin modules and their EMA twins, ADA, pl_mean, and every process's RNG streams. The loop's own
generators (it.rng, the sampler's order, the grid) are functions of (seed, position): they need
no state. The networks' weights are the host's to save (it writes the snapshot).
"""

import os

import numpy as np
import torch

from .distributed import rng_state, seed_process, set_rng_state
from .errors import UserError
from .extensions import SnapshotInfo

SNAPSHOT_NAME = 'network-snapshot-{kimg:06d}.pkl'


def rank_state(loop):
    """This process's own part of the state: its RNG streams (noise, augmentation, mixing)
    and its share of the ADA statistics not yet all-reduced."""
    state = dict(rng=rng_state(loop.device))
    if loop.ada is not None:
        state['ada_signs'] = torch.stack([loop.ada.sign_sum, loop.ada.sign_count]).cpu()
    return state


def loop_state(loop, ranks):
    """The loop's state with `ranks`, every process's rank_state (`rng` is rank 0's)."""
    modules, twins = loop.nets.state()
    sampler = loop.sampler
    return dict(cur_nimg=loop.cur_nimg, iteration=loop.iteration, tick=loop.tick,
                sampler_position=sampler.position,
                sampler=dict(position=sampler.position, size=sampler.size, seed=sampler.seed,
                             shuffle=sampler.shuffle),
                pl_mean=loop.loss.pl_mean.detach().cpu(),
                optimizers={p.network: p.optimizer.state_dict() for p in loop.phases},
                modules=modules, twins=twins,
                ada=loop.ada.state_dict() if loop.ada is not None else None,
                augment_p=(loop.augment_pipe.p.detach().cpu()
                           if loop.augment_pipe is not None else None),
                rng=ranks[0]['rng'], ranks=ranks, world_size=loop.dist.world_size)


def load_loop_state(loop, state):
    """Continue exactly where loop_state() was taken (this process's share included)."""
    sampler = state.get('sampler')
    if sampler is not None and int(sampler['size']) != loop.sampler.size:
        raise UserError(f"the run was trained on {sampler['size']} dataset items but this "
                        f'dataset has {loop.sampler.size}; resume with the same data '
                        f'(and the same --mirror)')
    loop.cur_nimg = int(state['cur_nimg'])
    loop.iteration = int(state['iteration'])
    loop.tick = int(state['tick'])
    loop.sampler.position = int(state['sampler_position'])
    loop.loss.pl_mean.copy_(torch.as_tensor(state['pl_mean']))
    same_run = 'resume with the plugins and options the run started with'
    loop.nets.load_state(state.get('modules', {}), state.get('twins', {}), same_run)
    for phase in loop.phases:
        try:
            phase.optimizer.load_state_dict(state['optimizers'][phase.network])
        except (KeyError, ValueError):
            raise UserError(f'the saved optimiser state of {phase.network} does not fit this '
                            f"run's trainable parameters; {same_run}") from None
    if state.get('ada') is not None and loop.ada is not None:
        loop.ada.load_state_dict(state['ada'])
    if state.get('augment_p') is not None and loop.augment_pipe is not None:
        loop.augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
    _load_rank_state(loop, state.get('ranks') or [dict(rng=state['rng'])])


def _load_rank_state(loop, ranks):
    """This process's RNG streams and ADA share. With another process count than the saved
    one the streams cannot continue: they restart from (seed, iteration, rank), and rank 0
    takes all pending ADA statistics (their all-reduced sum is unchanged)."""
    dist, ada = loop.dist, loop.ada
    same_layout = len(ranks) == dist.world_size
    if same_layout:
        set_rng_state(ranks[dist.rank]['rng'], loop.device)
    else:
        loop.log(f'Warning: the run was saved with {len(ranks)} process(es) and resumes with '
                 f'{dist.world_size}; noise and augmentation draws restart from the seed, so '
                 f'the continuation is equivalent but not bit-identical')
        restart = np.random.SeedSequence([loop.opts.seed, loop.iteration])
        seed_process(int(restart.generate_state(1, np.uint32)[0]), dist)
    if ada is not None and all('ada_signs' in r for r in ranks):
        if same_layout:
            signs = torch.as_tensor(ranks[dist.rank]['ada_signs'])
        elif dist.rank == 0:
            signs = sum(torch.as_tensor(r['ada_signs']) for r in ranks)
        else:
            signs = torch.zeros([2], dtype=torch.float64)
        signs = signs.to(ada.sign_sum.device, torch.float64)
        ada.sign_sum, ada.sign_count = signs[0].clone(), signs[1].clone()


def write_snapshot(loop):
    """network-snapshot-<kimg>.pkl through the host's save_snapshot(path, loop) (an atomic
    write), then on_snapshot; rank 0 only. It becomes the newest valid snapshot."""
    if loop.save_snapshot is None or loop.dist.rank != 0:
        return None
    path = os.path.join(loop.run_dir, SNAPSHOT_NAME.format(kimg=loop.cur_nimg // 1000))
    loop.save_snapshot(path, loop)
    loop.last_snapshot, loop.snapshot_iteration = path, loop.iteration
    info = SnapshotInfo(path=path, kimg=loop.cur_nimg / 1000, iteration=loop.iteration)
    for fn in loop.ext.on_snapshot:
        fn(info)
    return path


__all__ = ['SNAPSHOT_NAME', 'rank_state', 'loop_state', 'load_loop_state', 'write_snapshot']
