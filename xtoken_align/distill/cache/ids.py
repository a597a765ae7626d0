"""Token ids stored in the fewest bits the vocabulary needs, as planes safetensors can hold.

    vocabulary ≤ 256      one uint8 plane    `name`
    ≤ 65,536              one uint16 plane   `name`
    ≤ 16,777,216          `name` uint16 (low 16 bits) + `name.hi` uint8 (bits 16-23): 24 bits

So a 151,669-token Qwen3 id takes 3 bytes, a 128,256-token Llama-3 id too, a 32,000-token Llama-2
id 2. `id_layout(151_669) -> "uint16+uint8"`. Left out: bit-packing below a byte (17 or 18 bits),
which saves a quarter at the cost of unaligned reads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xtoken_align.errors import XTokenError

LAYOUTS = {"uint8": 1 << 8, "uint16": 1 << 16, "uint16+uint8": 1 << 24}


def id_layout(vocab_size: int) -> str:
    """The smallest layout for ids below `vocab_size`: `id_layout(32_000) -> "uint16"`."""
    for layout, limit in LAYOUTS.items():
        if vocab_size <= limit:
            return layout
    raise XTokenError(f"a vocabulary of {vocab_size:,} ids is beyond the cache's 24-bit ids")


def pack_ids(name: str, ids: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """`ids` (any shape, int64) as the planes of `layout`."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if layout == "uint8":
        return {name: ids.astype(np.uint8)}
    if layout == "uint16":
        return {name: ids.astype(np.uint16)}
    return {name: (ids & 0xFFFF).astype(np.uint16), f"{name}.hi": (ids >> 16).astype(np.uint8)}


def unpack_ids(name: str, read: Callable[[str], np.ndarray], layout: str) -> np.ndarray:
    """The int64 ids of `name`, from `read(plane)` (a slice of a shard's tensor)."""
    ids = read(name).astype(np.int64)
    if layout == "uint16+uint8":
        ids |= read(f"{name}.hi").astype(np.int64) << 16
    return ids
