"""edgepack.save / edgepack.load: one self-contained file, no pickle, no original class needed.

Layout (little endian), format version 2:
    0   8   magic b"EDGEPACK"
    8   4   u32 format version (2)
    12  4   u32 reserved (0)
    16  8   u64 header length H
    24  32  sha256 of everything after these 56 bytes (header and data region)
    56  H   header: compact UTF-8 JSON {"format", "version", "model": <module tree>,
            "sections": [[dtype, shape], ...]}
    56+H    the data region: the sections back to back, no padding (load copies every section
            into its own aligned memory, so nothing is read in place); the file ends exactly at
            the last section's end.
A section's offset and size follow from the dtypes and shapes of the sections before it.

Every tensor is stored once. Int8 linear layers store what the packing is made from, not the
packed buffer: their int8 weights [N, K] in the smallest of three exact encodings (as is; a
bitmap of the non-zero 1 x B blocks plus those blocks' values; a bitmap of the non-zero weights
plus their values), with the per-channel scales and the bias;
load packs them again (pack_weights / pack_sparse are deterministic, so the packed buffer and the
outputs are bit-identical; column sums and padding are derived, not stored). A layer whose
dense-or-sparse packing was picked by timing (sparse="auto": pack_auto's crossover, measured on
the saving CPU at "packing_rows" rows per call) is marked "packing": "auto", and load times the
pick again on the loading CPU at the same rows; forced picks ("never", "always", "smaller") load
as saved. Either packing computes the same outputs bit for bit, so only speed depends on it.
Files of format version 1 (packed buffers, 64-byte aligned sections) are refused with an error
naming the version: save the model again with this edgepack.

The module tree is JSON: {"type": <allow-listed type>, ...constructor fields..., "children":
[[name, tree], ...]} for containers, and for a model whose forward is not a plain composition an
"fx" node: the torch.fx graph of the model as a list of nodes whose call_function / call_method
targets come from an allow-list, plus the tree of the modules it calls. load() rebuilds plain
torch / edgepack.nn modules (an fx.GraphModule for fx graphs) computing the same outputs.

Every problem with a file (truncated, bit flips, tampered header, unknown types, shapes that do
not match) raises ValueError.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import re
import struct
import warnings
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .nn import MaxPool2d, QuantConv2d, QuantEmbedding, QuantLinear, _backend
from .quantize.config import MAX_ROWS_PER_CALL

MAGIC = b"EDGEPACK"
VERSION = 2
_PRE = struct.Struct("<8sIIQ32s")  # magic, version, reserved, header length, sha256 of the rest
MAX_HEADER = 64 << 20
_DTYPES: dict[str, tuple[np.dtype[Any], torch.dtype]] = {
    "float32": (np.dtype("<f4"), torch.float32),
    "float64": (np.dtype("<f8"), torch.float64),
    "float16": (np.dtype("<f2"), torch.float16),
    "int8": (np.dtype("i1"), torch.int8),
    "uint8": (np.dtype("u1"), torch.uint8),
    "int32": (np.dtype("<i4"), torch.int32),
    "int64": (np.dtype("<i8"), torch.int64),
    "bool": (np.dtype("?"), torch.bool),
}
_TORCH2NAME = {t: n for n, (_, t) in _DTYPES.items()}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHILD = re.compile(r"^[^.\x00-\x1f]{1,256}$")  # what nn.Module.add_module accepts, bounded
_PATH = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class FormatError(ValueError):
    """The file is not a valid edgepack artifact."""


def _fail(msg: str) -> FormatError:
    return FormatError(f"invalid edgepack file: {msg}")


# ---------------------------------------------------------------------------------------------
# byte sections


class _Writer:
    def __init__(self) -> None:
        self.sections: list[list[Any]] = []
        self.chunks: list[bytes] = []
        self.size = 0

    def add_bytes(self, data: bytes, dtype: str = "uint8", shape: list[int] | None = None) -> int:
        self.sections.append([dtype, shape if shape is not None else [len(data)]])
        self.chunks.append(data)
        self.size += len(data)
        return len(self.sections) - 1

    def add_tensor(self, t: torch.Tensor | np.ndarray) -> int:
        arr_in = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else t
        name = next((n for n, (npd, _) in _DTYPES.items() if arr_in.dtype == npd), None)
        if name is None:
            raise TypeError(f"cannot save a tensor of dtype {arr_in.dtype}")
        arr = np.asarray(arr_in, dtype=_DTYPES[name][0], order="C")  # keeps 0-d shapes
        return self.add_bytes(arr.tobytes(), name, list(arr.shape))


class _Reader:
    def __init__(self, data: memoryview, sections: list[dict[str, Any]]) -> None:
        self.data = data
        self.sections = sections
        self.used: set[int] = set()

    def _sec(self, idx: object) -> dict[str, Any]:
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(self.sections):
            raise _fail(f"bad section reference {idx!r}")
        self.used.add(idx)
        return self.sections[idx]

    def tensor(self, idx: object, shape: tuple[int, ...] | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(self.array(idx, shape, dtype))

    def array(self, idx: object, shape: tuple[int, ...] | None = None,
              dtype: torch.dtype | None = None) -> np.ndarray:
        s = self._sec(idx)
        npd, td = _DTYPES[s["dtype"]]
        if dtype is not None and td != dtype:
            raise _fail(f"section {idx} has dtype {s['dtype']}, expected {dtype}")
        shp = tuple(s["shape"])
        if shape is not None and shp != tuple(shape):
            raise _fail(f"section {idx} has shape {shp}, expected {tuple(shape)}")
        arr = np.frombuffer(self.data[s["offset"]: s["offset"] + s["nbytes"]], dtype=npd)
        return arr.reshape(shp).copy()  # own, aligned, writable memory


def _validate_sections(sections: object, data_nbytes: int) -> list[dict[str, Any]]:
    """[[dtype, shape], ...] -> sections with offsets; they must tile the data region exactly."""
    if not isinstance(sections, list):
        raise _fail("'sections' must be a list")
    out = []
    off = 0
    for i, s in enumerate(sections):
        if not isinstance(s, list) or len(s) != 2:
            raise _fail(f"section {i} is not a [dtype, shape] pair")
        dt, shp = s
        if not isinstance(dt, str) or dt not in _DTYPES:
            raise _fail(f"section {i}: unknown dtype {dt!r}")
        if not isinstance(shp, list) or len(shp) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shp
        ):
            raise _fail(f"section {i}: bad shape")
        nb = _DTYPES[dt][0].itemsize * math.prod(shp)  # python ints: no overflow
        if off + nb > data_nbytes:
            raise _fail(f"section {i} lies outside the data region (truncated?)")
        out.append({"offset": off, "nbytes": nb, "dtype": dt, "shape": shp})
        off += nb
    if off != data_nbytes:
        raise _fail(f"data region has {data_nbytes} bytes, sections use {off} (truncated?)")
    return out


# ---------------------------------------------------------------------------------------------
# module codecs: plain modules are rebuilt from constructor fields read off the module


def _j(v: Any) -> Any:
    """Constructor field -> JSON (tuples become lists)."""
    if isinstance(v, (tuple, list)):
        return [_j(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot store {type(v).__name__} in the module tree")


def _t(v: Any) -> Any:
    """JSON -> constructor field (lists become tuples)."""
    return tuple(_t(x) for x in v) if isinstance(v, list) else v


# type name -> (class, constructor fields); the state (if any) is the module's state_dict
_SIMPLE: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "Identity": (nn.Identity, ()),
    "ReLU": (nn.ReLU, ()),
    "ReLU6": (nn.ReLU6, ()),
    "GELU": (nn.GELU, ("approximate",)),
    "SiLU": (nn.SiLU, ()),
    "Sigmoid": (nn.Sigmoid, ()),
    "Tanh": (nn.Tanh, ()),
    "Hardswish": (nn.Hardswish, ()),
    "Hardsigmoid": (nn.Hardsigmoid, ()),
    "LeakyReLU": (nn.LeakyReLU, ("negative_slope",)),
    "ELU": (nn.ELU, ("alpha",)),
    "Softmax": (nn.Softmax, ("dim",)),
    "LogSoftmax": (nn.LogSoftmax, ("dim",)),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Unflatten": (nn.Unflatten, ("dim", "unflattened_size")),
    "Dropout": (nn.Dropout, ("p",)),
    "MaxPool1d": (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "edgepack.MaxPool2d": (MaxPool2d, ("kernel_size", "stride", "padding", "dilation",
                                       "ceil_mode")),
    "AvgPool1d": (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override")),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
    "AdaptiveMaxPool2d": (nn.AdaptiveMaxPool2d, ("output_size",)),
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv1d": (nn.Conv1d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                           "dilation", "groups", "padding_mode")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                           "dilation", "groups", "padding_mode")),
    "Embedding": (nn.Embedding, ("num_embeddings", "embedding_dim", "padding_idx")),
    "BatchNorm1d": (nn.BatchNorm1d, ("num_features", "eps", "momentum", "affine",
                                     "track_running_stats")),
    "BatchNorm2d": (nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine",
                                     "track_running_stats")),
    "LayerNorm": (nn.LayerNorm, ("normalized_shape", "eps", "elementwise_affine")),
    "PReLU": (nn.PReLU, ("num_parameters",)),
}
_HAS_BIAS = {"Linear", "Conv1d", "Conv2d", "LayerNorm"}
_CONTAINERS: dict[str, type[nn.Module]] = {
    "Sequential": nn.Sequential, "ModuleList": nn.ModuleList, "ModuleDict": nn.ModuleDict,
}
_QUANT = ("QuantLinear", "QuantConv2d", "QuantEmbedding")


def _type_name(m: nn.Module) -> str | None:
    for name, (cls, _) in _SIMPLE.items():
        if type(m) is cls:
            return name
    for name, cls in _CONTAINERS.items():
        if type(m) is cls:
            return name
    if type(m) in (QuantLinear, QuantConv2d, QuantEmbedding):
        return type(m).__name__
    return None


def _effective_state(m: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with pruning reparametrizations resolved to the masked tensors."""
    sd = {k: v for k, v in m.state_dict(keep_vars=False).items() if "." not in k}
    for k in list(sd):
        if k.endswith("_orig") and k[:-5] + "_mask" in sd:
            base = k[:-5]
            sd[base] = getattr(m, base).detach()
            del sd[k], sd[base + "_mask"]
    return sd


def _enc_weight(w_q: np.ndarray, bk: int, w: _Writer) -> dict[str, Any]:
    """The smallest of three exact encodings of int8 weights [N, K]: "dense" (as is), "blocks"
    (bitmap of the non-zero 1 x bk blocks of each row + their values: block-pruned weights) and
    "elements" (bitmap of the non-zero weights + their values: scattered zeros, e.g. conv weights
    block-pruned in torch's (c, kh, kw) order, which the im2col kernels read in another)."""
    n, k = w_q.shape
    kb = -(-k // bk)
    wp = np.zeros((n, kb * bk), np.int8)
    wp[:, :k] = w_q
    blocks = wp.reshape(n, kb, bk)
    bmask = blocks.any(axis=2)
    emask = w_q != 0
    sizes = {"dense": n * k, "blocks": (n * kb + 7) // 8 + int(bmask.sum()) * bk,
             "elements": (n * k + 7) // 8 + int(emask.sum())}
    enc = min(sizes, key=lambda e: sizes[e])  # ties: dense first
    if enc == "dense":
        return {"weight_enc": enc, "weight": w.add_tensor(w_q)}
    if enc == "blocks":
        return {"weight_enc": enc, "enc_block": bk,
                "weight_mask": w.add_tensor(np.packbits(bmask.reshape(-1))),
                "weight": w.add_tensor(blocks[bmask].reshape(-1))}
    return {"weight_enc": enc, "weight_mask": w.add_tensor(np.packbits(emask.reshape(-1))),
            "weight": w.add_tensor(w_q[emask])}


def _dec_weight(d: dict[str, Any], r: _Reader, n: int, k: int) -> np.ndarray:
    enc = _get(d, "weight_enc", str)
    if enc == "dense":
        return r.array(d.get("weight"), (n, k), torch.int8)
    if enc == "blocks":
        bk = _get(d, "enc_block", int)
        if bk not in (4, 8, 16):
            raise _fail(f"bad weight block size {bk}")
    elif enc == "elements":
        bk = 1
    else:
        raise _fail(f"unknown weight encoding {enc!r}")
    kb = -(-k // bk)
    mask = np.unpackbits(r.array(d.get("weight_mask"), ((n * kb + 7) // 8,), torch.uint8),
                         count=n * kb).astype(bool).reshape(n, kb)
    nnz = int(mask.sum())
    vals = r.array(d.get("weight"), (nnz * bk,), torch.int8)
    wp = np.zeros((n, kb, bk), np.int8)
    wp[mask] = vals.reshape(nnz, bk)
    wp2 = wp.reshape(n, kb * bk)
    if wp2[:, k:].any():
        raise _fail("weights beyond in_features")
    return np.ascontiguousarray(wp2[:, :k])


def _enc_quant_linear(m: QuantLinear, w: _Writer) -> dict[str, Any]:
    # the packed object is the source of truth for what the kernels compute: store what it was
    # packed from (unpack is exact), once; load packs it again
    w_q, scale, bias = m.packed.unpack()
    kind = m.packed_kind
    d: dict[str, Any] = {"in_features": m.in_features, "out_features": m.out_features,
                         "relu": m.relu, "packed_kind": kind}
    if kind == "sparse":
        d["block_k"] = int(m.packed.block[1])
    d.update(_enc_weight(np.asarray(w_q, np.int8), int(d.get("block_k", 4)), w))
    d["weight_scale"] = w.add_tensor(np.asarray(scale, np.float32))
    if bias is not None:  # absent fields read as None: no nulls in the header
        d["bias"] = w.add_tensor(np.asarray(bias, np.float32))
    if m.act_scale is not None:
        d["act_scale"] = m.act_scale
        d["act_zero_point"] = m.act_zero_point
    if getattr(m, "sparse_policy", None) == "auto":
        d["packing"] = "auto"  # chosen by timing on this CPU: load times it again on its own
        d["packing_rows"] = int(getattr(m, "rows_per_call", 1))  # at this many rows per call
    return d


def _encode(m: nn.Module, w: _Writer, fx_leaves_only: bool = False) -> dict[str, Any]:
    tn = _type_name(m)
    if tn is None:
        raise TypeError(f"module type {type(m).__name__} cannot be stored")
    if tn in _CONTAINERS:
        for n in m._modules:
            if not _CHILD.match(n):
                raise TypeError(f"module name {n!r} cannot be stored")
        return {"type": tn, "children": [[n, _encode(c, w)] for n, c in m.named_children()]}
    if tn == "QuantLinear":
        assert isinstance(m, QuantLinear)
        return {"type": tn, **_enc_quant_linear(m, w)}
    if tn == "QuantConv2d":
        assert isinstance(m, QuantConv2d)
        return {"type": tn, "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                "pads": list(m.pads), "dilation": list(m.dilation),
                "padding_mode": m.padding_mode, "act_granularity": m.act_granularity,
                "linear": _enc_quant_linear(m.linear, w)}
    if tn == "QuantEmbedding":
        assert isinstance(m, QuantEmbedding)
        return {"type": tn, "padding_idx": m.padding_idx,
                "weight_q": w.add_tensor(m.weight_q), "weight_scale": w.add_tensor(m.weight_scale)}
    _, fields = _SIMPLE[tn]
    d: dict[str, Any] = {"type": tn, "args": {f: _j(getattr(m, f)) for f in fields}}
    if tn in _HAS_BIAS:
        d["args"]["bias"] = getattr(m, "bias", None) is not None
    state = _effective_state(m)
    if state:
        d["state"] = {k: w.add_tensor(v) for k, v in state.items()}
    if list(m.children()):
        raise TypeError(f"{tn} with child modules cannot be stored")
    return d


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], opt: bool = False) -> Any:
    v = d.get(key)
    if v is None and opt:
        return None
    if not isinstance(v, kind) or (isinstance(v, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise _fail(f"field {key!r} of {d.get('type')!r} is missing or has the wrong type")
    return v


def _dec_quant_linear(d: dict[str, Any], r: _Reader) -> QuantLinear:
    k = _get(d, "in_features", int)
    n = _get(d, "out_features", int)
    if k <= 0 or n <= 0:
        raise _fail("QuantLinear features must be positive")
    kind = _get(d, "packed_kind", str)
    scale = r.array(d.get("weight_scale"), (n,), torch.float32)
    bias = None if d.get("bias") is None else r.array(d.get("bias"), (n,), torch.float32)
    if kind not in ("dense", "sparse"):
        raise _fail(f"unknown packed weight kind {kind!r}")
    w_q = _dec_weight(d, r, n, k)
    choice = _get(d, "packing", str, opt=True)
    if choice is not None and choice != "auto":
        raise _fail(f"unknown packing choice {choice!r}")
    rows = _get(d, "packing_rows", int, opt=True)
    if rows is not None and (choice != "auto" or not 1 <= rows <= MAX_ROWS_PER_CALL):
        raise _fail(f"bad packing_rows {rows!r}")
    rows = 1 if rows is None else rows
    if choice == "auto":
        # The saver's dense/sparse pick was a speed measurement of its CPU (pack_auto's
        # crossover); the loading CPU may differ (an AMX server saves, a phone loads), so pick
        # again here, at the same rows per call. Both packings compute the same outputs.
        packed = _backend.pack_linear(torch.from_numpy(w_q), torch.from_numpy(scale),
                                      None if bias is None else torch.from_numpy(bias), "auto",
                                      rows)
    elif kind == "sparse":
        bk = _get(d, "block_k", int)
        if bk not in (4, 8, 16):
            raise _fail(f"bad sparse block size {bk}")
        packed = _backend._need("pack_sparse")(w_q, scale, bias=bias, block=(1, bk))
    else:
        packed = _backend._need("pack_weights")(w_q, scale, bias=bias)
    if tuple(packed.shape) != (n, k):
        raise _fail(f"packed weights have shape {tuple(packed.shape)}, expected {(n, k)}")
    a_s = _get(d, "act_scale", (float, int), opt=True)
    a_z = _get(d, "act_zero_point", int, opt=True)
    if (a_s is None) != (a_z is None):
        raise _fail("act_scale and act_zero_point go together")
    if a_s is not None and (not np.isfinite(a_s) or a_s <= 0 or not 0 <= a_z <= 255):
        raise _fail("bad static activation parameters")
    return QuantLinear(packed, k, n, torch.from_numpy(scale),
                       None if bias is None else torch.from_numpy(bias),
                       relu=bool(_get(d, "relu", bool)),
                       act_scale=a_s, act_zero_point=a_z, sparse_policy=choice,
                       rows_per_call=rows)


def _decode(d: object, r: _Reader, depth: int = 0) -> nn.Module:
    if depth > 64:
        raise _fail("module tree too deep")
    if not isinstance(d, dict):
        raise _fail("module entry is not an object")
    tn = d.get("type")
    if not isinstance(tn, str):
        raise _fail("module entry without a type")
    if tn in _CONTAINERS:
        ch = _get(d, "children", list)
        mod = _CONTAINERS[tn]()
        for item in ch:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and _CHILD.match(item[0])):
                raise _fail("bad child entry")
            if item[0] in mod._modules:
                raise _fail(f"duplicate child {item[0]!r}")
            mod.add_module(item[0], _decode(item[1], r, depth + 1))
        return mod
    if tn == "QuantLinear":
        return _dec_quant_linear(d, r)
    if tn == "QuantConv2d":
        lin_d = _get(d, "linear", dict)
        return QuantConv2d(_dec_quant_linear(lin_d, r), _get(d, "in_channels", int),
                           _get(d, "out_channels", int), _t(_get(d, "kernel_size", list)),
                           _t(_get(d, "stride", list)), _t(_get(d, "pads", list)),
                           _t(_get(d, "dilation", list)), _get(d, "padding_mode", str),
                           _get(d, "act_granularity", str))
    if tn == "QuantEmbedding":
        sec = r.sections[d["weight_q"]] if isinstance(d.get("weight_q"), int) and 0 <= d[
            "weight_q"] < len(r.sections) else None
        if sec is None or len(sec["shape"]) != 2:
            raise _fail("QuantEmbedding needs a 2-D weight_q section")
        q = r.tensor(d["weight_q"], None, torch.int8)
        s = r.tensor(d.get("weight_scale"), (q.shape[0],), torch.float32)
        pi = _get(d, "padding_idx", int, opt=True)
        return QuantEmbedding(q, s, pi)
    if tn not in _SIMPLE:
        raise _fail(f"module type {tn!r} is not allowed")
    cls, fields = _SIMPLE[tn]
    args = _get(d, "args", dict)
    allowed = set(fields) | ({"bias"} if tn in _HAS_BIAS else set())
    if set(args) - allowed:
        raise _fail(f"unexpected fields for {tn}: {sorted(set(args) - allowed)}")
    kwargs = {k: _t(v) for k, v in args.items()}
    if tn in ("Linear", "Conv1d", "Conv2d", "Embedding", "LayerNorm", "BatchNorm1d", "BatchNorm2d",
              "PReLU"):
        kwargs["device"] = "meta"  # no random init: the state below replaces everything
    mod = cls(**kwargs)
    state = d.get("state", {})
    if not isinstance(state, dict):
        raise _fail("bad state")
    expect = mod.state_dict()
    if set(state) != set(expect):
        raise _fail(f"{tn} state has keys {sorted(state)}, expected {sorted(expect)}")
    sd = {k: r.tensor(state[k], tuple(expect[k].shape), expect[k].dtype) for k in state}
    if sd:
        mod.load_state_dict(sd, assign=True)
    return mod


# ---------------------------------------------------------------------------------------------
# fx graphs for models whose forward is not a plain composition

_FUNCS: dict[str, Callable[..., Any]] = {
    **{f"operator.{n}": getattr(operator, n) for n in (
        "add", "sub", "mul", "truediv", "floordiv", "neg", "getitem", "matmul", "pow", "mod",
        "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_")},
    **{f"torch.{n}": getattr(torch, n) for n in (
        "add", "sub", "mul", "div", "matmul", "bmm", "cat", "stack", "flatten", "reshape",
        "permute", "transpose", "relu", "sigmoid", "tanh", "softmax", "mean", "sum", "exp",
        "sqrt", "rsqrt", "clamp", "chunk", "split", "squeeze", "unsqueeze", "where", "max", "min",
        "abs", "tanh", "erf", "log", "neg", "einsum", "arange", "zeros_like", "ones_like")},
    **{f"F.{n}": getattr(F, n) for n in (
        "relu", "relu6", "gelu", "silu", "sigmoid", "softmax", "log_softmax", "layer_norm",
        "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout", "pad", "normalize",
        "hardswish", "leaky_relu", "linear", "embedding", "interpolate")},
}
_FUNC_NAMES = {id(fn): name for name, fn in _FUNCS.items()}
_FUNC_NAMES[id(getattr)] = "builtins.getattr"
_GETATTR_OK = {"shape", "ndim", "dtype", "T"}
_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "size", "dim", "mean",
    "sum", "relu", "sigmoid", "tanh", "softmax", "unsqueeze", "squeeze", "add", "mul", "sub",
    "div", "matmul", "chunk", "split", "expand", "expand_as", "float", "clamp", "max", "min",
    "t", "type_as", "masked_fill", "exp", "pow", "sqrt", "abs", "view_as", "numel", "neg",
    "__getitem__", "repeat", "narrow", "select", "unbind", "norm",
}
_TDTYPES = {n: t for n, (_, t) in _DTYPES.items()}


def _enc_arg(a: Any) -> Any:
    if isinstance(a, fx.Node):
        return {"n": a.name}
    if a is None or isinstance(a, (bool, int, str)):
        return a
    if isinstance(a, float):
        return {"f": repr(a)}
    if isinstance(a, tuple):
        return {"t": [_enc_arg(x) for x in a]}
    if isinstance(a, list):
        return [_enc_arg(x) for x in a]
    if isinstance(a, dict):
        return {"d": [[str(k), _enc_arg(v)] for k, v in a.items()]}
    if isinstance(a, slice):
        return {"s": [_enc_arg(a.start), _enc_arg(a.stop), _enc_arg(a.step)]}
    if a is Ellipsis:
        return {"e": 1}
    if isinstance(a, torch.dtype) and a in _TORCH2NAME:
        return {"dt": _TORCH2NAME[a]}
    raise TypeError(f"graph argument of type {type(a).__name__} cannot be stored")


def _dec_arg(a: Any, env: dict[str, fx.Node], depth: int = 0) -> Any:
    if depth > 32:
        raise _fail("graph argument too deep")
    if a is None or isinstance(a, (bool, int, str)):
        return a
    if isinstance(a, list):
        return [_dec_arg(x, env, depth + 1) for x in a]
    if not isinstance(a, dict) or len(a) != 1:
        raise _fail("bad graph argument")
    (k, v), = a.items()
    if k == "n":
        if v not in env:
            raise _fail(f"graph argument refers to unknown node {v!r}")
        return env[v]
    if k == "f" and isinstance(v, str):
        try:
            return float(v)
        except ValueError as e:
            raise _fail("bad float") from e
    if k == "t" and isinstance(v, list):
        return tuple(_dec_arg(x, env, depth + 1) for x in v)
    if k == "d" and isinstance(v, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in v):
        return {p[0]: _dec_arg(p[1], env, depth + 1) for p in v}
    if k == "s" and isinstance(v, list) and len(v) == 3:
        return slice(*(_dec_arg(x, env, depth + 1) for x in v))
    if k == "e":
        return Ellipsis
    if k == "dt" and v in _TDTYPES:
        return _TDTYPES[v]
    raise _fail("bad graph argument")


class _NoGraph(TypeError):
    """torch.fx could not trace the model's forward."""


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        tn = _type_name(m)
        if tn is not None:
            return tn not in _CONTAINERS
        # other torch.nn modules stay leaves, so that save names them in its error
        return super().is_leaf_module(m, module_qualified_name)


def _encode_fx(model: nn.Module, w: _Writer) -> dict[str, Any]:
    try:
        graph = _LeafTracer().trace(model)
    except Exception as e:  # noqa: BLE001 - report why the model cannot be stored
        raise _NoGraph(f"{type(model).__name__}.forward cannot be captured with torch.fx "
                       f"({type(e).__name__}: {str(e)[:200]})") from e
    nodes = []
    modules: dict[str, Any] = {}
    attrs: dict[str, int] = {}
    for node in graph.nodes:
        entry: dict[str, Any] = {"op": node.op, "name": node.name}
        if node.op == "call_function":
            name = _FUNC_NAMES.get(id(node.target))
            if name is None:
                raise TypeError(f"function {node.target} in the forward is not allowed in files")
            if name == "builtins.getattr" and (len(node.args) != 2 or node.args[1]
                                               not in _GETATTR_OK):
                raise TypeError(f"getattr(..., {node.args[1:]!r}) is not allowed in files")
            entry["target"] = name
        elif node.op == "call_method":
            if node.target not in _METHODS:
                raise TypeError(f"tensor method {node.target!r} is not allowed in files")
            entry["target"] = node.target
        elif node.op == "call_module":
            target = str(node.target)
            if target not in modules:
                modules[target] = _encode(model.get_submodule(target), w)
            entry["target"] = target
        elif node.op == "get_attr":
            target = str(node.target)
            val = operator.attrgetter(target)(model)
            if not isinstance(val, torch.Tensor):
                raise TypeError(f"attribute {target} is not a tensor")
            if target not in attrs:
                attrs[target] = w.add_tensor(val)
            entry["target"] = target
        else:
            entry["target"] = str(node.target)
        entry["args"] = _enc_arg(node.args)
        entry["kwargs"] = _enc_arg(dict(node.kwargs))
        nodes.append(entry)
    return {"type": "fx", "nodes": nodes, "modules": modules, "attrs": attrs}


def _set_path(root: nn.Module, path: str, value: nn.Module | torch.Tensor) -> None:
    parts = path.split(".")
    cur = root
    for p in parts[:-1]:
        nxt = cur._modules.get(p)
        if nxt is None:
            nxt = nn.Module()
            cur.add_module(p, nxt)
        cur = nxt
    if parts[-1] in cur._modules or parts[-1] in cur._buffers:
        raise _fail(f"duplicate path {path!r}")
    if isinstance(value, nn.Module):
        cur.add_module(parts[-1], value)
    else:
        cur.register_buffer(parts[-1], value)


def _decode_fx(d: dict[str, Any], r: _Reader) -> nn.Module:
    nodes = _get(d, "nodes", list)
    modules = _get(d, "modules", dict)
    attrs = _get(d, "attrs", dict)
    root = nn.Module()
    for path, md in modules.items():
        if not _PATH.match(path):
            raise _fail(f"bad module path {path!r}")
        _set_path(root, path, _decode(md, r))
    for path, sec in attrs.items():
        if not _PATH.match(path):
            raise _fail(f"bad attribute path {path!r}")
        _set_path(root, path, r.tensor(sec))
    g = fx.Graph()
    env: dict[str, fx.Node] = {}
    has_output = False
    for nd in nodes:
        if not isinstance(nd, dict):
            raise _fail("graph node is not an object")
        op, name, target = nd.get("op"), nd.get("name"), nd.get("target")
        if not isinstance(name, str) or not _IDENT.match(name) or name in env:
            raise _fail(f"bad node name {name!r}")
        if has_output:
            raise _fail("nodes after the output")
        args = _dec_arg(nd.get("args"), env)
        kwargs = _dec_arg(nd.get("kwargs"), env)
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise _fail("bad node arguments")
        tgt: Any
        if op == "placeholder" or op == "output":
            if not isinstance(target, str) or not _IDENT.match(target):
                raise _fail("bad placeholder/output target")
            tgt = target
            has_output = op == "output"
        elif op == "call_function":
            if target == "builtins.getattr":
                if len(args) != 2 or args[1] not in _GETATTR_OK:
                    raise _fail("getattr target not allowed")
                tgt = getattr
            elif isinstance(target, str) and target in _FUNCS:
                tgt = _FUNCS[target]
            else:
                raise _fail(f"function {target!r} is not allowed")
        elif op == "call_method":
            if target not in _METHODS:
                raise _fail(f"method {target!r} is not allowed")
            tgt = target
        elif op == "call_module":
            if target not in modules:
                raise _fail(f"graph calls unknown module {target!r}")
            tgt = target
        elif op == "get_attr":
            if target not in attrs:
                raise _fail(f"graph reads unknown attribute {target!r}")
            tgt = target
        else:
            raise _fail(f"bad node op {op!r}")
        env[name] = g.create_node(op, tgt, args, kwargs, name=name)
    if not has_output:
        raise _fail("graph has no output")
    try:
        g.lint()
    except Exception as e:  # noqa: BLE001
        raise _fail(f"graph does not verify: {e}") from e
    return fx.GraphModule(root, g)


# ---------------------------------------------------------------------------------------------
# public API


def _is_tree(m: nn.Module) -> bool:
    tn = _type_name(m)
    if tn is None:
        return False
    if tn in _CONTAINERS:
        return all(_is_tree(c) for c in m.children())
    return True


def _encode_state(model: nn.Module, w: _Writer) -> dict[str, Any]:
    """Weights-only layout for models whose forward no graph can capture (e.g. Hugging Face
    transformers): every known leaf module (QuantLinear, LayerNorm, ...) by its path, plus the
    tensors owned directly by the other modules. load(path, into=<an instance of the class>)
    puts them into a copy of that instance."""
    modules: dict[str, Any] = {}
    tensors: dict[str, int] = {}

    def walk(m: nn.Module, prefix: str) -> None:
        tn = _type_name(m)
        if prefix and tn is not None and tn not in _CONTAINERS:
            modules[prefix[:-1]] = _encode(m, w)
            return
        if tn is None and list(m.children()) == [] and type(m).__module__.startswith("torch.nn"):
            raise TypeError(f"module type {type(m).__name__} cannot be stored")
        own = list(m._parameters.items()) + list(m._buffers.items())
        for name, t in own:
            if isinstance(t, torch.Tensor):
                tensors[prefix + name] = w.add_tensor(t)
        for cname, c in m.named_children():
            walk(c, prefix + cname + ".")

    walk(model, "")
    return {"type": "state", "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "modules": modules, "tensors": tensors}


def _decode_state(d: dict[str, Any], r: _Reader, into: nn.Module | None) -> nn.Module:
    cls = _get(d, "class", str)
    if into is None:
        raise FormatError(f"this file holds the weights of a {cls}, whose forward is not a graph "
                          "edgepack can store; load it with edgepack.load(path, into=<an "
                          "instance of that class>)")
    from ._copy import deepcopy_model
    from .optimize import set_submodule

    model = deepcopy_model(into)
    modules = _get(d, "modules", dict)
    tensors = _get(d, "tensors", dict)
    for path, md in modules.items():
        if not isinstance(path, str) or not _PATH.match(path):
            raise _fail(f"bad module path {path!r}")
        parent, _, _ = path.rpartition(".")
        try:
            model.get_submodule(parent) if parent else model
        except AttributeError as e:
            raise _fail(f"`into` has no module {parent!r} (another architecture?)") from e
        set_submodule(model, path, _decode(md, r))
    for path, sec in tensors.items():
        if not isinstance(path, str) or not _PATH.match(path):
            raise _fail(f"bad tensor path {path!r}")
        owner, _, name = path.rpartition(".")
        try:
            mod = model.get_submodule(owner) if owner else model
        except AttributeError as e:
            raise _fail(f"`into` has no module {owner!r} (another architecture?)") from e
        cur = mod._parameters.get(name, mod._buffers.get(name))
        if not isinstance(cur, torch.Tensor):
            raise _fail(f"`into` has no tensor {path!r} (another architecture?)")
        t = r.tensor(sec, tuple(cur.shape), cur.dtype)
        with torch.no_grad():
            cur.copy_(t)
    return model


def save(model: nn.Module, path: str | os.PathLike[str]) -> int:
    """Write `model` (compressed or not) to one file; returns the number of bytes written.

    Plain compositions (Sequential/ModuleList/ModuleDict of known layers) are stored as a module
    tree; other models as their torch.fx graph; both load without the model's class. A model
    whose forward torch.fx cannot capture (e.g. Hugging Face transformers) is stored weights-only
    (a warning says so): load it with edgepack.load(path, into=<an instance of its class>).
    Raises TypeError for what cannot be stored.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    w = _Writer()
    if _is_tree(model):
        tree = _encode(model, w)
    else:
        try:
            tree = _encode_fx(model, w)
        except _NoGraph as e:
            warnings.warn(f"edgepack.save: {e}; storing weights only: load with "
                          "edgepack.load(path, into=<an instance of the class>)", stacklevel=2)
            w = _Writer()
            tree = _encode_state(model, w)
    header = {"format": "edgepack", "version": VERSION, "model": tree, "sections": w.sections}
    hb = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    h = hashlib.sha256(hb)
    for c in w.chunks:
        h.update(c)
    head = _PRE.pack(MAGIC, VERSION, 0, len(hb), h.digest()) + hb
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(head)
        for c in w.chunks:
            f.write(c)
    os.replace(tmp, path)
    return len(head) + w.size


def _parse(buf: bytes, into: nn.Module | None) -> nn.Module:
    if len(buf) < _PRE.size:
        raise _fail("file is too short (truncated?)")
    magic, version, reserved, hlen, hsha = _PRE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise _fail("not an edgepack file (bad magic)")
    if version != VERSION or reserved != 0:
        old = " (written by an older edgepack: save the model again)" if version == 1 else ""
        raise _fail(f"unsupported format version {version}, this edgepack reads {VERSION}{old}")
    if hlen > MAX_HEADER or _PRE.size + hlen > len(buf):
        raise _fail("header length out of range (truncated?)")
    if hashlib.sha256(memoryview(buf)[_PRE.size:]).digest() != hsha:
        raise _fail("checksum mismatch (corrupted or truncated?)")
    hb = buf[_PRE.size: _PRE.size + hlen]
    try:
        header = json.loads(hb.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail("header is not valid JSON") from e
    if not isinstance(header, dict) or header.get("format") != "edgepack" or header.get(
            "version") != VERSION:
        raise _fail("header is not an edgepack header")
    start = _PRE.size + hlen
    sections = _validate_sections(header.get("sections"), len(buf) - start)
    data = memoryview(buf)[start:]
    r = _Reader(data, sections)
    tree = header.get("model")
    if isinstance(tree, dict) and tree.get("type") == "fx":
        model = _decode_fx(tree, r)
    elif isinstance(tree, dict) and tree.get("type") == "state":
        model = _decode_state(tree, r, into)
    else:
        model = _decode(tree, r)
    if len(r.used) != len(sections):
        raise _fail("the file holds sections no module uses")
    return model.eval()


def load(path: str | os.PathLike[str], *, into: nn.Module | None = None) -> nn.Module:
    """Rebuild a model saved by edgepack.save (eval mode). Invalid files raise ValueError.

    into: only for weights-only files (models whose forward is not a graph): an instance of the
    saved model's class (e.g. the fp32 model); a compressed copy of it is returned, `into` itself
    is not changed.
    """
    if into is not None and not isinstance(into, nn.Module):
        raise TypeError(f"into must be a torch.nn.Module, got {type(into).__name__}")
    with open(path, "rb") as f:
        buf = f.read()
    return loads(buf, into=into)


def loads(buf: bytes, *, into: nn.Module | None = None) -> nn.Module:
    """load() from bytes already in memory."""
    try:
        return _parse(bytes(buf), into)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError,
            OverflowError, struct.error) as e:
        # a header that passed its checksum but describes something inconsistent
        raise _fail(f"{type(e).__name__}: {e}") from e
