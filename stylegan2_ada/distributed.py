"""Multi-process training with torch.distributed (env://): one process per device.

The same code runs as one plain process, under `torchrun` (the launcher sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, on one machine or many) and under `--gpus N`, which spawns
N local processes on a free port and sets the same variables, so that every process takes the one
code path. Rank 0 writes files; what must agree between processes is all-reduced (the loop and the
loss say what). CUDA uses NCCL, CPU uses gloo.
"""

import dataclasses
import os
import queue
import random
import socket

import numpy as np
import torch

from .errors import UserError

LAUNCHER_VARIABLES = ('RANK', 'WORLD_SIZE')


@dataclasses.dataclass
class Distributed:
    """This process's place among the training processes (rank 0 writes files and logs)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self):
        return self.world_size > 1

    def all_reduce_mean(self, tensor):
        if self.active:
            torch.distributed.all_reduce(tensor)
            tensor /= self.world_size

    def all_reduce_sum(self, tensor):
        if self.active:
            torch.distributed.all_reduce(tensor)

    def broadcast_object(self, obj):
        """Rank 0's `obj` on every process."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every process."""
        if not self.active:
            return [obj]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def broadcast_tensors(self, tensors):
        """Overwrite `tensors` (parameters, buffers) with rank 0's values, in place."""
        if self.active:
            for tensor in tensors:
                torch.distributed.broadcast(tensor.data, src=0)

    def barrier(self):
        if self.active:
            torch.distributed.barrier()


def launched():
    """True when a launcher (torchrun, or --gpus' own spawn) started this process as one rank."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


def launched_world_size():
    return int(os.environ['WORLD_SIZE']) if launched() else None


def process_device(requested, local_rank):
    """The torch device of this process: --device if given, else CUDA when available; with
    several processes each takes the CUDA device of its local rank."""
    device = torch.device(requested or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda':
        if launched() and int(os.environ['WORLD_SIZE']) > 1:
            device = torch.device('cuda', local_rank)
        elif device.index is None:   # set_device needs an index: 'cuda' means the current one
            device = torch.device('cuda', torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def init_process(requested_device):
    """(Distributed, device) of this process; joins the process group when launched with several
    processes (NCCL on CUDA, gloo on CPU)."""
    if not launched():
        return Distributed(), process_device(requested_device, 0)
    rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    device = process_device(requested_device, local_rank)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        torch.distributed.init_process_group(backend=backend, init_method='env://', rank=rank,
                                             world_size=world_size)
    return Distributed(rank, world_size, local_rank), device


def shutdown(dist, finished=True):
    """Leave the process group. After a normal end every rank first waits for the others
    (rank 0 still writes files): a rank that tears gloo down while a peer is mid-collective can
    abort both ("terminate called without an active exception"). After an error nobody waits."""
    if dist.active and torch.distributed.is_initialized():
        if finished:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def free_port():
    """A TCP port nobody listens on now, for the spawned processes' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def spawn(fn, nprocs, args=()):
    """Run fn(*args) in `nprocs` local processes as ranks 0..nprocs-1; returns rank 0's result.

    A UserError in any process comes back as a UserError here (one line, exit 2 in the CLI), not
    as a child's traceback.
    """
    context = torch.multiprocessing.get_context('spawn')
    messages = context.SimpleQueue()
    port = free_port()
    try:
        torch.multiprocessing.start_processes(_child, args=(fn, nprocs, port, messages, args),
                                              nprocs=nprocs, join=True, start_method='spawn')
    except (torch.multiprocessing.ProcessRaisedException,
            torch.multiprocessing.ProcessExitedException):
        for kind, value in _drain(messages):
            if kind == 'user_error':
                raise UserError(value) from None
        raise
    for kind, value in _drain(messages):
        if kind == 'result':
            return value
    return None


def _drain(messages):
    items = []
    while True:
        try:
            if messages.empty():
                return items
            items.append(messages.get())
        except (OSError, EOFError, queue.Empty):
            return items


def _child(index, fn, nprocs, port, messages, args):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(index),
                      LOCAL_RANK=str(index), WORLD_SIZE=str(nprocs),
                      LOCAL_WORLD_SIZE=str(nprocs))
    if 'OMP_NUM_THREADS' not in os.environ:
        # Share the cores (torchrun sets OMP_NUM_THREADS=1): oversubscribed CPU threads spin and
        # slow every process down many times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))
    try:
        result = fn(*args)
    except UserError as error:
        messages.put(('user_error', str(error)))
        raise SystemExit(2)
    if index == 0:
        messages.put(('result', result))


# -- random number generators -----------------------------------------------------------------------

def seed_process(seed, dist):
    """Per-process streams for noise inputs, augmentation and mixing (NVIDIA: seed * K + rank);
    what must agree between processes is drawn from seeded generators instead (it.rng)."""
    process_seed = seed * dist.world_size + dist.rank
    torch.manual_seed(process_seed)
    np.random.seed(process_seed % 2 ** 32)
    random.seed(process_seed)


def rng_state(device):
    """Every global generator of this process as plain data (snapshot-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    state = dict(torch=torch.get_rng_state(),
                 numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                            has_gauss=int(has_gauss), gauss=float(gauss)),
                 python=dict(version=version, words=list(words), gauss_next=gauss_next))
    if torch.device(device).type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(torch.as_tensor(state['torch'], dtype=torch.uint8))
    if 'numpy' in state:
        n = state['numpy']
        keys = torch.as_tensor(n['keys']).numpy().astype(np.uint32)
        np.random.set_state((n['kind'], keys, n['pos'], n['has_gauss'], n['gauss']))
    if 'python' in state:
        p = state['python']
        random.setstate((p['version'], tuple(p['words']), p['gauss_next']))
    if 'cuda' in state and torch.device(device).type == 'cuda':
        torch.cuda.set_rng_state(torch.as_tensor(state['cuda'], dtype=torch.uint8), device)
