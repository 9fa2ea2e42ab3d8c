// NEON dotprod sparse kernel (kS8: activations arrive as a_u8 - 128; sdot multiplies int8 by
// int8 and adds groups of 4 products into int32 lanes, exact).
//
// GEMV (ldm == 1): 16 activation dwords are gathered by block index with scalar loads (no
// gather instruction), then four sdot against the lane-ordered 64 value bytes: one int32 sum
// per lane, nothing to fold.
//
// Tiles (ldm multiple of 4, transposed in groups of 4 k): per lane (row) and block, the 4
// weights are duplicated across a q register (dup .4s) and sdot-ed against each 4-row run of
// the tile: 16 bytes = 4 rows x 4 k per instruction, up to 8 accumulators (32 rows) per pass.
#include <arm_neon.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  for (std::size_t s = s_begin; s < s_end; ++s) {
    int32x4_t sum[4];
    for (int q = 0; q < 4; ++q) sum[q] = vdupq_n_s32(0);
    for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
      const uint16_t* ix = v.idx + e * kSparseSlice;
      for (std::size_t t = 0; t < v.t; ++t) {
        alignas(16) int8_t g[64];
        for (std::size_t l = 0; l < kSparseSlice; ++l)
          std::memcpy(g + 4 * l, a + (std::size_t{ix[l]} * v.t + t) * 4, 4);
        const int8_t* w = v.values + (e * v.t + t) * 64;
        for (int q = 0; q < 4; ++q)
          sum[q] = vdotq_s32(sum[q], vld1q_s8(g + 16 * q), vld1q_s8(w + 16 * q));
      }
    }
    int32_t* out = acc + (s - s_begin) * kSparseSlice;
    for (int q = 0; q < 4; ++q) vst1q_s32(out + 4 * q, sum[q]);
  }
}

template <int NQ>
void row_tile(const SparseView& v, std::size_t s, std::size_t lane, const uint8_t* at,
              std::size_t ldm, std::size_t r0, int32_t* out) {
  int32x4_t sum[NQ];
  for (int q = 0; q < NQ; ++q) sum[q] = vdupq_n_s32(0);
  const std::size_t cnt = v.row_nblk[s * kSparseSlice + lane];
  const std::size_t e0 = v.slice_ptr[s];
  for (std::size_t i = 0; i < cnt; ++i) {
    const std::size_t e = e0 + i;
    const std::size_t j = v.idx[e * kSparseSlice + lane];
    for (std::size_t t = 0; t < v.t; ++t) {
      uint32_t wd;
      std::memcpy(&wd, v.values + ((e * v.t + t) * kSparseSlice + lane) * 4, 4);
      const int8x16_t wb = vreinterpretq_s8_u32(vdupq_n_u32(wd));
      const int8_t* ap = reinterpret_cast<const int8_t*>(at) + (j * v.t + t) * ldm * 4 + r0 * 4;
      for (int q = 0; q < NQ; ++q) sum[q] = vdotq_s32(sum[q], vld1q_s8(ap + 16 * q), wb);
    }
  }
  for (int q = 0; q < NQ; ++q) vst1q_s32(out + r0 + 4 * q, sum[q]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      int32_t* out = acc + ((s - s_begin) * kSparseSlice + lane) * ldm;
      std::size_t r0 = 0;
      for (; r0 + 32 <= ldm; r0 += 32) row_tile<8>(v, s, lane, at, ldm, r0, out);
      switch ((ldm - r0) / 4) {
        case 7: row_tile<7>(v, s, lane, at, ldm, r0, out); break;
        case 6: row_tile<6>(v, s, lane, at, ldm, r0, out); break;
        case 5: row_tile<5>(v, s, lane, at, ldm, r0, out); break;
        case 4: row_tile<4>(v, s, lane, at, ldm, r0, out); break;
        case 3: row_tile<3>(v, s, lane, at, ldm, r0, out); break;
        case 2: row_tile<2>(v, s, lane, at, ldm, r0, out); break;
        case 1: row_tile<1>(v, s, lane, at, ldm, r0, out); break;
        default: break;
      }
    }
}

}  // namespace

SparseKernels sparse_kernels_neondot() {
  return SparseKernels{Isa::kNeonDot, AFormat::kS8, 4, run};
}

}  // namespace edgepack
