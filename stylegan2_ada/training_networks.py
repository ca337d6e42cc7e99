"""G, D and G_ema with a run's `Extensions` applied for training (docs/hooks.md §5 steps 4-5).

Every conflict and misfit is found before anything changes; then G's conditioning is added, what
trains is fixed once (the core's trainable mask, the plugins' parameter groups) and
ExtendedNetworks holds the extension modules, EMA twins and reparams that every render uses.
"""

import copy

import numpy as np
import torch

from .errors import UserError
from .extended import ExtendedNetworks
from .extensions import ConflictError, check_param_groups, owner_of, trainable_mask
from .reparam import resolve_layer


def raw_indices(dataset, indices):
    """Raw image indices of dataset items (--mirror doubles items, not images), as a LongTensor.

    Datasets that double their items say so with `raw_index(i)`; otherwise items are images.
    """
    raw = getattr(dataset, 'raw_index', None)
    return torch.as_tensor([raw(int(i)) if raw else int(i) for i in indices], dtype=torch.int64)


class Labels:
    """The c of reals and fakes: the conditioning extension's, else the dataset labels."""

    def __init__(self, dataset, conditioning, device):
        self.dataset = dataset
        self.conditioning = conditioning
        self.device = device

    def item_c(self, items):
        """c of dataset items (the reals', and the sample grid's)."""
        if self.conditioning is not None:
            return self.conditioning.real_c(raw_indices(self.dataset, items))
        return torch.from_numpy(np.stack([self.dataset.get_label(i) for i in items])
                                .astype(np.float32))

    def gen_c(self, n, it):
        """The fakes' c: the conditioning's gen_c, else NVIDIA's labels of uniform dataset items."""
        cond = self.conditioning
        if cond is not None and cond.gen_c is not None:
            c = cond.gen_c(n, it)
        else:
            items = torch.randint(len(self.dataset), [n], generator=it.rng).tolist()
            c = self.item_c(items)
        return c.to(self.device, torch.float32)

    def default_c(self, n, it):
        """The c a render gets when none is given: the training c, drawn from `it`."""
        if it is None:
            raise ValueError('synthesize needs `it` (or an explicit c) to draw the c')
        return self.gen_c(n, it)


def check_extensions(ext, G, D, aug):
    """Every conflict and misfit that needs no work, before anything is changed."""
    ext.check()
    conditioning, augment_p = ext.exclusive('conditioning'), ext.exclusive('augment_p')
    if conditioning is not None:
        owner = owner_of(conditioning, 'conditioning', 0)
        if D.c_dim != 0:
            raise ConflictError(f'{owner!r} conditions the run, but D is conditioned on the '
                                f'dataset labels; train without --cond')
        if G.c_dim not in (0, conditioning.c_dim):
            raise UserError(f'{owner!r} conditions G on {conditioning.c_dim} values, but '
                            f'G is conditioned on {G.c_dim}; start from an '
                            f'unconditional source')
    if augment_p is not None and aug != 'ada':
        raise UserError(f"{owner_of(augment_p, 'augment_p', 0)!r} sets the augmentation "
                        f"probability, which needs --aug ada (got --aug {aug})")
    for index, head in enumerate(ext.d_heads):
        unknown = sorted(set(head.features) - set(D.feature_names))
        if unknown:
            raise UserError(f"D head {head.name!r} ({owner_of(head, 'd_heads', index)}) reads "
                            f'{unknown}, which this D does not have ({D.feature_names})')
    for mapping in ext.weight_reparam:
        for path in mapping:
            resolve_layer(dict(G=G, D=D), path)


class TrainingNetworks:
    """The live G and D, G_ema, and what the extensions add to them; `nets` renders.

    `trainable` is the core parameters that train per side ('G', 'D'), `groups` the plugins'
    parameter groups per side; `labels` draws c (ExtendedNetworks' default c is the training c).
    """

    def __init__(self, G, D, extensions, dataset, opts, device, G_ema=None):
        self.ext = ext = extensions
        self.G = G.train().requires_grad_(False).to(device)
        self.D = D.train().requires_grad_(False).to(device)
        check_extensions(ext, self.G, self.D, opts.aug)
        conditioning = ext.exclusive('conditioning')
        if conditioning is not None and self.G.c_dim == 0:
            self.G.add_conditioning(conditioning.c_dim)
        networks = dict(G=self.G, D=self.D)
        self.trainable = trainable_mask(networks, ext.freeze_policy)
        check_param_groups(ext.param_groups, networks)
        self.groups = {net: [g for g in ext.param_groups if g.network == net]
                       for net in ('G', 'D')}

        self.G_ema = G_ema if G_ema is not None else copy.deepcopy(self.G)
        self.G_ema.eval().requires_grad_(False).to(device)
        if conditioning is not None and self.G_ema.c_dim == 0:
            self.G_ema.add_conditioning(conditioning.c_dim)
        self.labels = Labels(dataset, conditioning, device)
        self.nets = ExtendedNetworks(ext, self.G_ema, G=self.G, D=self.D, device=device,
                                     style_mixing=opts.style_mixing,
                                     default_c=self.labels.default_c)

    def active_params(self, net, iteration):
        """The side's trainable mask plus the plugin groups that have started."""
        params = list(self.trainable[net])
        for group in self.groups[net]:
            if iteration >= group.start_iteration:
                params += list(group.module.parameters())
        return params

    def parameter_counts(self):
        """Trainable and frozen parameter counts per module (G.mapping, G.synthesis.b{r}, D.b{r},
        <owner>.<group>); plugin groups count as trainable even before their start."""
        trainable = {id(p) for params in self.trainable.values() for p in params}
        modules = [(f'G.{name}', child) for name, child in self.G.named_children()
                   if name != 'synthesis']
        modules += [(f'G.synthesis.{name}', child)
                    for name, child in self.G.synthesis.named_children()]
        modules += [(f'D.{name}', child) for name, child in self.D.named_children()]
        rows = []
        for name, module in modules:
            params = list(module.parameters())
            train = sum(p.numel() for p in params if id(p) in trainable)
            rows.append(dict(module=name, trainable=train,
                             frozen=sum(p.numel() for p in params) - train))
        for index, group in enumerate(self.ext.param_groups):
            count = sum(p.numel() for p in group.module.parameters())
            rows.append(dict(module=f"{owner_of(group, 'param_groups', index)}.{group.name}",
                             trainable=count, frozen=0))
        return rows

    def tensors(self):
        """Every parameter and buffer of G, D, G_ema, the extension modules and their twins."""
        return ([t for m in (self.G, self.D, self.G_ema)
                 for t in list(m.parameters()) + list(m.buffers())] + self.nets.tensors())


__all__ = ['TrainingNetworks', 'Labels', 'check_extensions', 'raw_indices']
