"""CDC's anchor regions (§3.2): which iterations use the image-level D on latents near the
anchors, and which use the patch-level D on ordinary latents."""

from stylegan2_ada.extensions import LatentBatch

IMAGE, PATCH = 'image', 'patch'
# Phases whose latents feed the adversarial game; path length keeps ordinary mixed z (as CDC).
ADVERSARIAL_PHASES = ('Gmain', 'Dmain', 'Gboth', 'Dboth')


class BranchSchedule:
    """fn(it) -> 'image' every subspace_freq-th iteration (index 0 included), else 'patch'."""

    def __init__(self, subspace_freq):
        self.subspace_freq = subspace_freq

    def __call__(self, it):
        branch = IMAGE if it.index % self.subspace_freq == 0 else PATCH
        it.report('patchd/image_level', float(branch == IMAGE))
        return branch


class AnchorSampler:
    """fn(it, n) -> z = anchor + N(0, std^2) without style mixing on image-level iterations'
    adversarial phases; None (the core's mixed z ~ N(0, I)) everywhere else."""

    def __init__(self, run, std):
        self.run = run
        self.std = std

    def __call__(self, it, n):
        if it.branch != IMAGE or it.phase not in ADVERSARIAL_PHASES:
            return None
        return LatentBatch(self.run.near_anchors(n, self.std, it.rng), mixing=False)
