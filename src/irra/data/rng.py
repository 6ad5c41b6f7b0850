"""Random generators derived from ``(seed, epoch, index, stream)``.

Every random choice of the data pipeline (augmentation, MLM masking, sampling order) draws from a
private :class:`torch.Generator` seeded from the run seed, the epoch, the sample index and the
name of the consumer. The global RNG is never used, so results do not depend on the number of
data-loader workers, on the order in which workers run, or on other code touching the global RNG.
"""

from __future__ import annotations

import hashlib
import struct

import torch

__all__ = ["derive_seed", "derive_generator"]

_SEED_MASK = (1 << 63) - 1


def derive_seed(seed: int, epoch: int, index: int, stream: str) -> int:
    """A 63-bit seed that is a hash of its arguments.

    Args:
        seed: the run seed.
        epoch: the epoch (0-based).
        index: the sample index (or -1 for epoch-level streams such as the sampler).
        stream: the consumer's name (``"image"``, ``"mlm"``, ``"sampler"``...), so that two
            consumers of the same sample draw independent numbers.

    Returns:
        a non-negative int below 2**63, the same on every machine and Python version.
    """
    packed = struct.pack("<qqq", int(seed), int(epoch), int(index)) + stream.encode("utf-8")
    digest = hashlib.blake2b(packed, digest_size=8).digest()
    return int.from_bytes(digest, "little") & _SEED_MASK


def derive_generator(seed: int, epoch: int, index: int, stream: str) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`derive_seed` of the arguments.

    Example:
        >>> g = derive_generator(0, epoch=3, index=17, stream="mlm")
        >>> torch.rand(2, generator=g).shape
        torch.Size([2])
    """
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, epoch, index, stream))
    return generator
