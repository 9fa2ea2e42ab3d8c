"""QuantEmbedding: an int8 embedding table (one symmetric scale per row), dequantized on lookup.

Lookup returns exactly edgepack.dequantize of the gathered rows: float32(q) * scale[row].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quantize.weights import effective_weight, quantize_weight


class QuantEmbedding(nn.Module):
    weight_q: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                 padding_idx: int | None = None) -> None:
        super().__init__()
        if weight_q.dtype != torch.int8 or weight_q.dim() != 2:
            raise TypeError("weight_q must be a 2-D int8 tensor")
        if weight_scale.shape != (weight_q.shape[0],):
            raise ValueError("weight_scale must have one entry per row of weight_q")
        self.num_embeddings, self.embedding_dim = (int(s) for s in weight_q.shape)
        self.padding_idx = padding_idx
        self.register_buffer("weight_q", weight_q.contiguous())
        self.register_buffer("weight_scale", weight_scale.to(torch.float32).contiguous())

    @classmethod
    def from_float(cls, mod: nn.Embedding) -> QuantEmbedding:
        if mod.max_norm is not None:
            raise ValueError("QuantEmbedding does not support max_norm (it renormalizes rows)")
        q, s = quantize_weight(effective_weight(mod))
        return cls(q, s, mod.padding_idx)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
            raise TypeError("QuantEmbedding: indices must be an int64/int32 tensor")
        # F.embedding checks the range itself (IndexError on CPU, negatives included); its
        # message is replaced by ours. No separate min/max pass: at batch 1 those two reductions
        # and their host syncs cost more than the lookup.
        try:
            bufs = self._buffers  # skips nn.Module.__getattr__ (a few us at batch 1)
            w_q, w_s = bufs["weight_q"], bufs["weight_scale"]
            assert w_q is not None and w_s is not None
            rows = F.embedding(idx, w_q.view(torch.uint8)).view(torch.int8)
            scale = F.embedding(idx, w_s.unsqueeze(1))
        except IndexError:
            raise IndexError(
                f"QuantEmbedding: index out of range [0, {self.num_embeddings})") from None
        # the same product as rows.to(float32) * weight_scale[idx][..., None], in place
        return rows.to(torch.float32).mul_(scale)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"
