// Per-tile GEMM epilogues: a micro-kernel's raw int32 tile ([mr][16], row stride ldt) becomes the
// output. Their own kernel family (reference first, then per ISA; dispatched like every family)
// so the micro-kernel contract of gemm.h stays as it is, while the epilogue still runs at the
// vector width of the machine. All tables are bit-identical to the reference:
//   acc = raw - zpoff * colsum               (wrap-around int32: exact when the sum fits)
//   s32: out = acc
//   f32: y = float(acc) * (row_scale[r] * w_scale[n]); y += bias[n] (if bias); relu (np.maximum)
//   q8:  the same y with a uniform a_scale and zpoff, then q = rint(clamp(y * inv, lo, hi)) + zp
//        (round half to even), stored as its low byte (int8 and uint8 alike).
// Pointers to per-column data (colsum, w_scale, bias) are already offset to the tile's first
// column and readable for 16 columns (packed arrays are padded to Np); nc <= 16 columns are
// stored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "edgepack/cpu.h"

namespace edgepack {

struct TileEpilogueArgs {
  std::size_t ldt;  // row stride of the int32 tile (16, or 32 for two-panel kernels)
  const int32_t* colsum;
  const float* w_scale;
  const float* bias;  // nullptr: no bias
  bool relu;
  // f32: per-row zero-point offset and activation scale, already at the tile's first row.
  const int32_t* row_zpoff;
  const float* row_scale;
  // s32 / q8: uniform zero-point offset (and q8's activation scale and requantization).
  int32_t zpoff;
  float a_scale;
  float inv, lo, hi;
  int32_t out_zp;
};

using TileS32Fn = void (*)(const int32_t* tile, std::size_t mr, std::size_t nc,
                           const TileEpilogueArgs& e, int32_t* out, std::size_t ldo);
using TileF32Fn = void (*)(const int32_t* tile, std::size_t mr, std::size_t nc,
                           const TileEpilogueArgs& e, float* out, std::size_t ldo);
using TileQ8Fn = void (*)(const int32_t* tile, std::size_t mr, std::size_t nc,
                          const TileEpilogueArgs& e, uint8_t* out, std::size_t ldo);

struct GemmEpilogues {
  Isa isa;
  TileS32Fn s32;
  TileF32Fn f32;
  TileQ8Fn q8;
};

const std::vector<GemmEpilogues>& gemm_epilogue_list();
const GemmEpilogues& gemm_epilogues();

}  // namespace edgepack
