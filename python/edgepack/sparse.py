"""Block-sparse int8 weights and the sparse dynamic int8 linear layer.

`pack_sparse` stores only the 1 x B blocks (B consecutive k of one output channel, B = 4, 8 or
16) that hold a non-zero weight, with uint16 block indices, in the order the SIMD kernels read
(see cpp/include/edgepack/sparse.h for the byte layout). `sparse_linear_int8` has the contract
and epilogue of the dense `linear_int8`: on the same (zeroed) weights it equals
`edgepack.reference.linear_int8_ref` bit for bit, on every ISA and thread count.

K that is not a multiple of B is padded with zero weights, so every K in 1..65536 packs.

`pack_auto` picks dense or sparse per layer from a crossover measured on this CPU for the
layer's shape (timed once per shape and cached for the process).
"""

from __future__ import annotations

import time
from typing import Any, Union

import numpy as np

from . import _core
from ._arrays import ArrayLike, int8_weights, like, per_channel, to_numpy

_BLOCKS = (4, 8, 16)


def _block_k(block: Any) -> int:
    ok = (
        isinstance(block, (tuple, list))
        and len(block) == 2
        and all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in block)
        and int(block[0]) == 1
        and int(block[1]) in _BLOCKS
    )
    if not ok:
        raise ValueError(f"block must be (1, 4), (1, 8) or (1, 16), got {block!r}")
    return int(block[1])


class PackedSparseLinear:
    """Block-sparse int8 weights [N, K] with per-output-channel scales (and bias), packed once.

    Build it with `pack_sparse` or `PackedSparseLinear.from_bytes`.
    """

    __slots__ = ("_k", "_p")

    def __init__(self, core: Any) -> None:
        if not isinstance(core, _core.PackedSparse):
            raise TypeError("use edgepack.pack_sparse() or PackedSparseLinear.from_bytes()")
        self._p = core
        self._k = int(core.k)  # read on every call: a plain attribute, not a binding call

    @property
    def shape(self) -> tuple[int, int]:
        """(N, K): output channels, input features."""
        return (int(self._p.n), int(self._p.k))

    @property
    def block(self) -> tuple[int, int]:
        return (1, int(self._p.block_k))

    @property
    def nbytes(self) -> int:
        """Bytes of the packed buffer: header, indices, values, scales, bias and column sums."""
        return int(self._p.nbytes)

    @property
    def nnz(self) -> int:
        """Non-zero weights."""
        return int(self._p.nnz)

    @property
    def nnz_blocks(self) -> int:
        return int(self._p.nnz_blocks)

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights (element-wise)."""
        n, k = self.shape
        return 1.0 - self.nnz / float(n * k)

    @property
    def block_sparsity(self) -> float:
        """Fraction of 1 x B blocks that are all zero (what the kernels' time follows)."""
        n, k = self.shape
        b = self.block[1]
        return 1.0 - self.nnz_blocks / float(n * ((k + b - 1) // b))

    @property
    def has_bias(self) -> bool:
        return bool(self._p.has_bias)

    def to_bytes(self) -> bytes:
        """The self-describing buffer (versioned header + checksum); see from_bytes."""
        return bytes(self._p.to_bytes())

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> PackedSparseLinear:
        """Load a buffer made by to_bytes. Raises ValueError for a truncated or corrupt buffer."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
        mv = memoryview(data)
        if not mv.contiguous:
            raise ValueError("data must be a contiguous buffer")
        return cls(_core.PackedSparse.from_bytes(mv.cast("B")))

    def unpack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(w_q int8 [N, K] with zeros restored, scale float32 [N], bias float32 [N] or None)."""
        return self._p.unpack(), self._p.scale(), self._p.bias()

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (PackedSparseLinear.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        n, k = self.shape
        return (
            f"PackedSparseLinear(shape=({n}, {k}), block={self.block}, "
            f"sparsity={self.sparsity:.3f}, nbytes={self.nbytes}, bias={self.has_bias})"
        )


def pack_sparse(
    w_q: ArrayLike, scale: Any, *, bias: Any = None, block: tuple[int, int] = (1, 4)
) -> PackedSparseLinear:
    """Pack int8 weights w_q [N, K] (zeros = pruned) with per-channel scale [N] (or one float).

    block: (1, 4), (1, 8) or (1, 16): 1 output channel x B consecutive k. Larger blocks only pay
    when the pruning left whole blocks (edgepack.prune.blocks with the same block).
    """
    bk = _block_k(block)
    w, n, _ = int8_weights(w_q, int(_core.GEMM_MAX_K))
    s = per_channel(scale, "scale", n, positive=True)
    b = None if bias is None else per_channel(bias, "bias", n, positive=False)
    return PackedSparseLinear(_core.pack_sparse(w, s, b, bk))


def sparse_linear_int8(
    x: ArrayLike, packed: PackedSparseLinear, *, relu: bool = False
) -> ArrayLike:
    """Dynamic int8 linear on sparse weights: x float32 [..., K] -> float32 [..., N].

    Per-row uint8 asymmetric activation quantization, exact int32 products over the stored
    blocks, y = acc * (a_scale * w_scale) + bias, optional ReLU: edgepack.reference's
    linear_int8_ref on the same zeroed weights, bit for bit. numpy in -> numpy out, torch -> torch.
    """
    if not isinstance(packed, PackedSparseLinear):
        raise TypeError(
            f"packed must be a PackedSparseLinear (from edgepack.pack_sparse), got "
            f"{type(packed).__name__}"
        )
    a = to_numpy(x, "x", (np.float32,))
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension (its last is K)")
    k = packed._k
    if a.shape[-1] != k:
        raise ValueError(f"x has last dimension {a.shape[-1]}, the packed weights have K = {k}")
    return like(_core.sparse_linear_int8(a, packed._p, bool(relu)), x)


# ---- dense or sparse, from a measured crossover ---------------------------------------------


def _dense_api() -> Any:
    """The package root, typed Any: the dense path (edgepack.pack_weights / linear_int8) is
    the GEMM work's (issue 3) and is looked up at call time, so this module works before and
    after both land."""
    import importlib

    return importlib.import_module("edgepack")


_CROSSOVER: dict[tuple[int, int, int, int], float] = {}


def _median_times(fns: list[list[Any]], reps: int) -> list[float]:
    """Median wall time per call of each entry of `fns`, timed interleaved: a round calls every
    entry once, and an entry cycles through its copies (the same layer packed several times),
    so each call finds its weights evicted from L1/L2 by the others, as a layer does inside a
    model, and a burst of load from other processes hits every entry alike."""
    for copies in fns:
        copies[0]()  # warm up (page faults, thread pool)
    ts: list[list[float]] = [[] for _ in fns]
    for r in range(reps):
        for i, copies in enumerate(fns):
            fn = copies[r % len(copies)]
            t0 = time.perf_counter()
            fn()
            ts[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in ts]


_EVICT_BYTES = 8 << 20  # weights cycled per measurement: several times a 2 MiB L2


def _block_pruned(n: int, k: int, bk: int, density: float, rng: np.random.Generator) -> np.ndarray:
    kb = (k + bk - 1) // bk
    keep = rng.random((n, kb)) < density
    w = rng.integers(-127, 128, size=(n, kb * bk), dtype=np.int8)
    w[w == 0] = 1
    w = w * np.repeat(keep, bk, axis=1).astype(np.int8)
    return np.ascontiguousarray(w[:, :k])


def sparse_crossover(
    n: int, k: int, *, batch: int = 1, block: tuple[int, int] = (1, 4), reps: int = 9
) -> float:
    """Block sparsity above which the sparse kernel beats edgepack's dense linear_int8 for this
    shape on this CPU (0.0: sparse always wins, 1.0: never). Measured once per (N, K, batch,
    block) and cached for the process: dense time, and sparse time at two block densities
    (sparse time is linear in the number of stored blocks), intersected. Timed interleaved
    with the weights evicted from L2 between calls, as for a layer inside a model.

    Needs edgepack.linear_int8 / edgepack.pack_weights (the dense GEMM).
    """
    bk = _block_k(block)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    key = (int(n), int(k), int(batch), bk)
    if key in _CROSSOVER:
        return _CROSSOVER[key]
    edgepack = _dense_api()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    scale = np.full(n, 0.01, np.float32)
    d_lo, d_hi = 0.05, 0.5
    # Measured with cold caches (copies cycled, see _median_times): inside a model, a layer's
    # weights are rarely still in L2 when it runs again. Warm, back-to-back timing at K = 1024
    # (weights in L2) favours the dense kernel several-fold and would keep pruned layers dense.
    copies = int(min(8, max(1, -(-_EVICT_BYTES // (n * k)))))
    wd = _block_pruned(n, k, bk, 1.0, rng)
    w_lo = _block_pruned(n, k, bk, d_lo, rng)
    w_hi = _block_pruned(n, k, bk, d_hi, rng)
    dense = [edgepack.pack_weights(wd, scale) for _ in range(copies)]
    lo = [pack_sparse(w_lo, scale, block=block) for _ in range(copies)]
    hi = [pack_sparse(w_hi, scale, block=block) for _ in range(copies)]
    t_dense, t_lo, t_hi = _median_times(
        [
            [lambda p=p: edgepack.linear_int8(x, p) for p in dense],
            [lambda p=p: sparse_linear_int8(x, p) for p in lo],
            [lambda p=p: sparse_linear_int8(x, p) for p in hi],
        ],
        max(reps, copies * 2 + 1),
    )
    slope = (t_hi - t_lo) / (d_hi - d_lo)
    if slope <= 0:  # noise at tiny shapes: decide on the measured points alone
        d_star = 1.0 if t_hi < t_dense else (d_lo if t_lo < t_dense else 0.0)
    else:
        d_star = d_lo + (t_dense - t_lo) / slope
    crossover = float(min(1.0, max(0.0, 1.0 - d_star)))
    _CROSSOVER[key] = crossover
    return crossover


def pack_auto(
    w_q: ArrayLike,
    scale: Any,
    *,
    bias: Any = None,
    block: tuple[int, int] = (1, 4),
    batch: int = 1,
) -> Any:
    """Dense (edgepack.pack_weights) or sparse (pack_sparse) packing, whichever is faster for
    this layer at `batch` rows per call on this CPU: sparse when the layer's block sparsity is
    at or above the measured crossover for its shape (see sparse_crossover) and the sparse
    packing is not bigger than the dense one, so a noisy crossover can never buy a format that
    is both slower and bigger. Run the result with linear_auto (or the matching linear_int8 /
    sparse_linear_int8).
    """
    edgepack = _dense_api()
    sp = pack_sparse(w_q, scale, bias=bias, block=block)
    dense = edgepack.pack_weights(w_q, scale, bias=bias)
    if sp.nbytes > dense.nbytes:  # bigger is never chosen: no need to time it (a dense layer
        return dense  # with a few natural zeros, e.g. every layer of a pretrained transformer)
    return sp if faster_than_dense(sp, batch=batch) else dense


def faster_than_dense(sp: PackedSparseLinear, *, batch: int = 1) -> bool:
    """Whether this sparse packing beats edgepack's dense linear_int8 at `batch` rows per call
    on this CPU: its block sparsity reaches sparse_crossover for its shape and block."""
    n, k = sp.shape
    return sp.block_sparsity >= sparse_crossover(n, k, batch=batch, block=sp.block)


def linear_auto(x: ArrayLike, packed: Any, *, relu: bool = False) -> ArrayLike:
    """Run what pack_auto returned: sparse_linear_int8 or the dense edgepack.linear_int8."""
    if isinstance(packed, PackedSparseLinear):
        return sparse_linear_int8(x, packed, relu=relu)
    return _dense_api().linear_int8(x, packed, relu=relu)


__all__ = [
    "PackedSparseLinear",
    "linear_auto",
    "pack_auto",
    "pack_sparse",
    "sparse_crossover",
    "sparse_linear_int8",
]
