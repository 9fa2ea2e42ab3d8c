// The kernel-contract loop (edgepack/sparse.h) that the one-panel sparse kernels share: one
// row (ldm == 1) goes to the kernel's GEMV; otherwise each slice meets each panel of R rows in
// turn. Internal linkage on purpose: every ISA file gets its own copy compiled with its own
// flags, so the linker can never hand one ISA's code to another.
#pragma once

#include <cstddef>
#include <cstdint>

#include "edgepack/sparse.h"

namespace edgepack {
namespace {

using SparseGemvFn = void (*)(const SparseView& v, const uint8_t* a, std::size_t s_begin,
                              std::size_t s_end, int32_t* acc);
// One panel (R rows, transposed in groups of 4 k) against slice s: out[lane * ldm + r].
using SparsePanelPassFn = void (*)(const SparseView& v, std::size_t s, const uint8_t* panel,
                                   int32_t* out, std::size_t ldm);

template <std::size_t R>
inline void sparse_run_panels(const SparseView& v, const uint8_t* at, std::size_t ldm,
                              std::size_t s_begin, std::size_t s_end, int32_t* acc,
                              SparseGemvFn gemv, SparsePanelPassFn pass) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  const std::size_t panel_bytes = std::size_t{v.kb} * v.t * 4 * R;
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t p = 0; p < ldm / R; ++p)
      pass(v, s, at + p * panel_bytes, acc + (s - s_begin) * kSparseSlice * ldm + p * R, ldm);
}

}  // namespace
}  // namespace edgepack
