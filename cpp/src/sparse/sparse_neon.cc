// NEON (armv8.0, no dotprod) sparse kernel (kS8: activations arrive as a_u8 - 128, so both
// sides are int8 and vmull_s8 products, at most 128 x 128 = 16384, fit int16 exactly).
//
// GEMV (ldm == 1): 16 activation dwords are gathered by block index with scalar loads (NEON has
// no gather), then per 4 lanes vmull_s8 / vmull_high_s8 against the lane-ordered values and
// vpadalq_s16 into int32 pair sums; vpaddq_s32 folds the pairs into one sum per lane.
//
// Tiles (panels of 4 rows, transposed in groups of 4 k): per step and lane, the block's 4
// weights are duplicated across a q register and multiplied with the lane's 16-byte panel run
// (vmull_s8 / vmull_high_s8), pair-accumulated; 8 lanes per pass (16 accumulators).
#include <arm_neon.h>

#include <cstring>

#include "kernels_internal.h"
#include "sparse/sparse_run.h"

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

// One panel of 4 tile rows against one slice, 8 lanes per pass (16 accumulators).
void panel_pass(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                std::size_t ldm) {
  const std::size_t t_count = v.t;
  for (std::size_t lg = 0; lg < kSparseSlice; lg += 8) {
    int32x4_t lo[8], hi[8];
    for (int l = 0; l < 8; ++l) lo[l] = hi[l] = vdupq_n_s32(0);
    for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
      const uint16_t* ix = v.idx + e * kSparseSlice + lg;
      for (std::size_t t = 0; t < t_count; ++t) {
        const int8_t* w = v.values + (e * t_count + t) * 64 + lg * 4;
        for (int l = 0; l < 8; ++l) {
          uint32_t wd;
          std::memcpy(&wd, w + 4 * l, 4);
          const int8x16_t wb = vreinterpretq_s8_u32(vdupq_n_u32(wd));
          const int8x16_t av = vld1q_s8(reinterpret_cast<const int8_t*>(panel) +
                                        (std::size_t{ix[l]} * t_count + t) * 16);
          lo[l] = vpadalq_s16(lo[l], vmull_s8(vget_low_s8(av), vget_low_s8(wb)));
          hi[l] = vpadalq_s16(hi[l], vmull_high_s8(av, wb));
        }
      }
    }
    for (int l = 0; l < 8; ++l) vst1q_s32(out + (lg + l) * ldm, vpaddq_s32(lo[l], hi[l]));
  }
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  sparse_run_panels<4>(v, at, ldm, s_begin, s_end, acc, gemv, panel_pass);
}

}  // namespace

SparseKernels sparse_kernels_neon() {
  return SparseKernels{Isa::kNeon, AFormat::kS8, 4, 4, 4, run, nullptr, nullptr};
}

}  // namespace edgepack
