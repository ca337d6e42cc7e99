"""Two views of the training images: items for the loop, raw images for plugins.

With --mirror the dataset doubles its items (item i + n is item i flipped). The loop needs the raw
image behind each item (conditioning's real_c takes raw indices); plugins want the raw images
themselves, counted before mirroring (CDC's n_train, DISP's prior bank). The dataset class offers
neither directly, so the host wraps it here.
"""


class LoopItems:
    """The dataset as the loop sees it (all items), plus raw_index(i)."""

    def __init__(self, dataset, raw_count):
        self._dataset = dataset
        self.raw_count = raw_count

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, idx):
        return self._dataset[idx]

    def raw_index(self, idx):
        return idx % self.raw_count

    def __getattr__(self, key):
        return getattr(self._dataset, key)


class RawImages:
    """run.dataset: len() raw images (before --mirror), raw_image(i) -> uint8 [C, H, W]."""

    def __init__(self, dataset, raw_count):
        self._dataset = dataset
        self._count = raw_count
        self.name = dataset.name
        self.resolution = dataset.resolution
        self.num_channels = dataset.num_channels
        self.label_dim = dataset.label_dim

    def __len__(self):
        return self._count

    def raw_image(self, idx):
        if not 0 <= idx < self._count:
            raise IndexError(f'raw image {idx} out of range 0..{self._count - 1}')
        return self._dataset[idx][0]   # items 0..n-1 are the unflipped images in raw order

    def raw_label(self, idx):
        return self._dataset.get_label(idx)


def views(dataset, mirrored):
    """(items for the loop, raw images for plugins) of one dataset."""
    raw_count = len(dataset) // 2 if mirrored else len(dataset)
    return LoopItems(dataset, raw_count), RawImages(dataset, raw_count)
