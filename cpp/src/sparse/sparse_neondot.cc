// NEON dotprod sparse kernel (kS8: activations arrive as a_u8 - 128; sdot multiplies int8 by
// int8 and adds groups of 4 products into int32 lanes, exact).
//
// GEMV (ldm == 1): 16 activation dwords are gathered by block index with scalar loads (no
// gather instruction), then four sdot against the lane-ordered 64 value bytes: one int32 sum
// per lane, nothing to fold.
//
// Tiles (panels of 4 rows, transposed in groups of 4 k): per step and lane, the block's 4
// weights are duplicated across a q register (dup .4s) and sdot-ed against the lane's 16-byte
// panel run (4 rows x 4 k): 16 accumulators, one per lane; idx and values stream in order.
#include <arm_neon.h>

#include <cstring>

#include "kernels_internal.h"
#include "sparse/sparse_run.h"

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

// One panel of 4 tile rows against one slice: 16 lanes, 16 accumulators.
void panel_pass(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                std::size_t ldm) {
  const std::size_t t_count = v.t;
  int32x4_t sum[16];
  for (int l = 0; l < 16; ++l) sum[l] = vdupq_n_s32(0);
  for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
    const uint16_t* ix = v.idx + e * kSparseSlice;
    for (std::size_t t = 0; t < t_count; ++t) {
      const int8_t* w = v.values + (e * t_count + t) * 64;
      for (int l = 0; l < 16; ++l) {
        uint32_t wd;
        std::memcpy(&wd, w + 4 * l, 4);
        const int8x16_t wb = vreinterpretq_s8_u32(vdupq_n_u32(wd));
        const int8x16_t av = vld1q_s8(reinterpret_cast<const int8_t*>(panel) +
                                      (std::size_t{ix[l]} * t_count + t) * 16);
        sum[l] = vdotq_s32(sum[l], av, wb);
      }
    }
  }
  for (int l = 0; l < 16; ++l) vst1q_s32(out + l * ldm, sum[l]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  sparse_run_panels<4>(v, at, ldm, s_begin, s_end, acc, gemv, panel_pass);
}

}  // namespace

SparseKernels sparse_kernels_neondot() {
  return SparseKernels{Isa::kNeonDot, AFormat::kS8, 4, 4, 4, run, nullptr, nullptr};
}

}  // namespace edgepack
