"""The train loader: an infinite, resumable stream of batches whose content is a pure function of
(seed, rank, world_size, step).

All ranks read one stream of sample positions 0, 1, 2, ...: position p is image perm_e[p mod N] with
epoch e = p // N, where perm_e is a permutation of the N images drawn from `default_rng([seed, e])`.
Step s covers the global batch of positions [s*G, (s+1)*G) with G = batch_size * world_size, and rank r takes
the strided part s*G + r + world_size*j, j < batch_size. So every epoch visits each image exactly once
(nothing is dropped; a step that straddles two epochs takes the tail of one and the head of the next), ranks
are disjoint within a step, and starting at step s is plain arithmetic, not a replay.

Each DataLoader item is one whole batch, not one __getitem__ per sample: a worker copies the batch's rows
from the memory-mapped shards straight into the batch tensors (`ShardSet.gather`, each row copied once).
"""
from __future__ import annotations

import numpy as np
import torch

from .shards import ShardSet


class StepBatches:
    """Iterable of per-rank index arrays, one per step from `start_step` on (infinite)."""

    def __init__(self, num_images: int, batch_size: int, rank: int, world_size: int, seed: int, start_step: int = 0):
        if num_images < 1:
            raise ValueError("the data set is empty")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_step < 0 or seed < 0:
            raise ValueError(f"need batch_size >= 1, 0 <= rank < world_size, start_step >= 0, seed >= 0; got "
                             f"batch_size={batch_size}, rank={rank}, world_size={world_size}, "
                             f"start_step={start_step}, seed={seed}")
        self.n, self.batch_size, self.rank, self.world_size = num_images, batch_size, rank, world_size
        self.seed, self.start_step = seed, start_step
        self._perms: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        global_batch = self.batch_size * self.world_size
        pos = step * global_batch + self.rank + self.world_size * np.arange(self.batch_size, dtype=np.int64)
        epoch, offset = np.divmod(pos, self.n)
        out = np.empty_like(pos)
        for e in np.unique(epoch):
            mask = epoch == e
            out[mask] = self.permutation(int(e))[offset[mask]]
        return out

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1


class ShardBatches(torch.utils.data.Dataset):
    """dataset[indices] -> one batch dict, read from the shards (float32 moments, int64 labels, uint8 images).

    In a DataLoader worker the large fields are written straight into shared memory (as torch's
    default_collate does), so handing them to the main process costs no further copy.
    """

    def __init__(self, shards: ShardSet, load_images: bool):
        self.shards, self.load_images = shards, load_images

    def _read(self, field: str, indices: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        shape = (len(indices), *self.shards.fields[field]["shape"])
        if torch.utils.data.get_worker_info() is None:
            out = torch.empty(shape, dtype=dtype)
        else:
            nbytes = int(np.prod(shape)) * dtype.itemsize
            out = torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape)
        self.shards.gather(field, indices, out=out.numpy())
        return out

    def __getitem__(self, indices: np.ndarray) -> dict:
        batch = {"latent": self._read("latent", indices, torch.float32),
                 "label": self._read("label", indices, torch.int64)}
        if self.load_images:
            batch["image"] = self._read("image", indices, torch.uint8)
        return batch


def batch_loader(shards: ShardSet, sampler: StepBatches, load_images: bool, num_workers: int):
    """A torch DataLoader yielding whole batches in step order (workers take steps round-robin)."""
    return torch.utils.data.DataLoader(
        ShardBatches(shards, load_images), batch_size=None, sampler=sampler, num_workers=num_workers,
        pin_memory=torch.cuda.is_available(), prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(sampler.seed))  # leaves the global torch RNG untouched
