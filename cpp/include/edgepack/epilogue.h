// The int8 linear epilogue shared by the dense and sparse drivers: zero-point correction of raw
// kernel sums, then dequantization exactly as python/edgepack/reference.py does it:
//   y = float32(acc) * float32(a_scale * w_scale); y += bias; y = max(y, 0) if relu
// (float32 throughout; the build uses -ffp-contract=off so no FMA can change the rounding).
#pragma once

#include <cstddef>
#include <cstdint>

#include "edgepack/gemm.h"

namespace edgepack {

// raw = sum a_enc * w with a_enc = a_u8 (kU8) or a_u8 - 128 (kS8); colsum = sum_k w;
// zpoff = zp_offset(fmt, a_zp), the offset between the kernel's A encoding and a_u8 - a_zp.
// Returns raw - zpoff * colsum = sum (a_u8 - a_zp) * w, computed modulo 2^32 so it is exact
// whenever the true value fits int32 (guaranteed for K <= kMaxK) and never signed-overflows.
inline int32_t zp_correct_off(int32_t raw, int32_t zpoff, int32_t colsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(raw) -
                              static_cast<uint32_t>(zpoff) * static_cast<uint32_t>(colsum));
}

inline int32_t zp_offset(AFormat fmt, int32_t a_zp) {
  return fmt == AFormat::kU8 ? a_zp : a_zp - 128;
}

inline float dequant_epilogue(int32_t acc, float a_scale, float w_scale, const float* bias,
                              std::size_t n, bool relu) {
  const float mult = a_scale * w_scale;  // rounded to float32 first, like the reference
  float y = static_cast<float>(acc) * mult;
  if (bias) y = y + bias[n];
  // np.maximum(y, 0) keeps NaN but turns -0.0 into +0.0 (y can be -0.0: a negative acc times
  // a scale product that underflowed to 0). `y <= 0` is false for NaN and true for -0.0.
  if (relu && y <= 0.0f) y = 0.0f;
  return y;
}

}  // namespace edgepack
