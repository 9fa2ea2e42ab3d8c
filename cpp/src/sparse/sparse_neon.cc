// NEON (armv8.0, no dotprod) sparse kernel (kS8: activations arrive as a_u8 - 128, so both
// sides are int8 and vmull_s8 products, at most 128 x 128 = 16384, fit int16 exactly).
//
// GEMV (ldm == 1): 16 activation dwords are gathered by block index with scalar loads (NEON has
// no gather), then per 4 lanes vmull_s8 / vmull_high_s8 against the lane-ordered values and
// vpadalq_s16 into int32 pair sums; vpaddq_s32 folds the pairs into one sum per lane.
//
// Tiles (ldm multiple of 4, transposed in groups of 4 k): per lane (row) and block, the 4
// weights are duplicated across a q register and each 4-row run (16 bytes) of the tile is
// multiplied (vmull_s8 / vmull_high_s8) and pair-accumulated; 16 rows per pass.
#include <arm_neon.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  for (std::size_t s = s_begin; s < s_end; ++s) {
    int32x4_t lo[4], hi[4];
    for (int q = 0; q < 4; ++q) lo[q] = hi[q] = vdupq_n_s32(0);
    for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
      const uint16_t* ix = v.idx + e * kSparseSlice;
      for (std::size_t t = 0; t < v.t; ++t) {
        alignas(16) int8_t g[64];
        for (std::size_t l = 0; l < kSparseSlice; ++l)
          std::memcpy(g + 4 * l, a + (std::size_t{ix[l]} * v.t + t) * 4, 4);
        const int8_t* w = v.values + (e * v.t + t) * 64;
        for (int q = 0; q < 4; ++q) {
          const int8x16_t av = vld1q_s8(g + 16 * q), wv = vld1q_s8(w + 16 * q);
          lo[q] = vpadalq_s16(lo[q], vmull_s8(vget_low_s8(av), vget_low_s8(wv)));
          hi[q] = vpadalq_s16(hi[q], vmull_high_s8(av, wv));
        }
      }
    }
    int32_t* out = acc + (s - s_begin) * kSparseSlice;
    for (int q = 0; q < 4; ++q) vst1q_s32(out + 4 * q, vpaddq_s32(lo[q], hi[q]));
  }
}

template <int NQ>
void row_tile(const SparseView& v, std::size_t s, std::size_t lane, const uint8_t* at,
              std::size_t ldm, std::size_t r0, int32_t* out) {
  int32x4_t lo[NQ], hi[NQ];
  for (int q = 0; q < NQ; ++q) lo[q] = hi[q] = vdupq_n_s32(0);
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
      for (int q = 0; q < NQ; ++q) {
        const int8x16_t av = vld1q_s8(ap + 16 * q);
        lo[q] = vpadalq_s16(lo[q], vmull_s8(vget_low_s8(av), vget_low_s8(wb)));
        hi[q] = vpadalq_s16(hi[q], vmull_high_s8(av, wb));
      }
    }
  }
  for (int q = 0; q < NQ; ++q) vst1q_s32(out + r0 + 4 * q, vpaddq_s32(lo[q], hi[q]));
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      int32_t* out = acc + ((s - s_begin) * kSparseSlice + lane) * ldm;
      std::size_t r0 = 0;
      for (; r0 + 16 <= ldm; r0 += 16) row_tile<4>(v, s, lane, at, ldm, r0, out);
      switch ((ldm - r0) / 4) {
        case 3: row_tile<3>(v, s, lane, at, ldm, r0, out); break;
        case 2: row_tile<2>(v, s, lane, at, ldm, r0, out); break;
        case 1: row_tile<1>(v, s, lane, at, ldm, r0, out); break;
        default: break;
      }
    }
}

}  // namespace

SparseKernels sparse_kernels_neon() { return SparseKernels{Isa::kNeon, AFormat::kS8, 4, run}; }

}  // namespace edgepack
