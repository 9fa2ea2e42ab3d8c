// NEON dotprod (Armv8.2 sdot) int8 GEMM micro-kernel, tile 4x16, A format kS8 (a_u8 - 128).
//
// Scheme, per 8 k (two c4n16 groups of 64 bytes):
//   - a 64-byte group is 4 q registers, each [col n: k 4g..4g+3] for 4 consecutive columns: that
//     is exactly sdot's operand shape (each int32 lane takes the dot product of 4 bytes);
//   - per row, 8 bytes of A (two groups of 4 k) are loaded once into a d register and sdot by
//     element (vdotq_lane_s32, lane 0 for the first group, 1 for the second) broadcasts the
//     matching 4 bytes, so no separate dup is issued;
//   - 16 int32 accumulators (4 rows x 4 quads of columns).
//   Registers: 16 accumulators + 4 A + 8 B = 28 of 32.
//
// Why exact: sdot multiplies int8 x int8 (|product| <= 16384) exactly and adds the four products
// (|sum| <= 65536) to the int32 lane; no narrower intermediate exists. The kernel therefore
// computes sum (a_u8 - 128) * w in int32, exact while it fits (guaranteed for K <= kMaxK) and
// otherwise modulo 2^32; the driver adds back 128 * colsum (see gemm.h, AFormat::kS8).
#include <arm_neon.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kMR = 4;

template <std::size_t MR>
void ukernel_mr(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
                std::size_t ldc) {
  int32x4_t acc[4 * MR];
  for (std::size_t i = 0; i < 4 * MR; ++i) acc[i] = vdupq_n_s32(0);
  const int8_t* as = reinterpret_cast<const int8_t*>(a);
  for (std::size_t k = 0; k < kp; k += 8, b += 2 * 4 * kNR) {
    int8x8_t av[MR];
    for (std::size_t r = 0; r < MR; ++r) av[r] = vld1_s8(as + r * lda + k);
    int8x16_t b0[4], b1[4];
    for (std::size_t q = 0; q < 4; ++q) {
      b0[q] = vld1q_s8(b + 16 * q);
      b1[q] = vld1q_s8(b + 4 * kNR + 16 * q);
    }
    for (std::size_t r = 0; r < MR; ++r)
      for (std::size_t q = 0; q < 4; ++q) {
        acc[4 * r + q] = vdotq_lane_s32(acc[4 * r + q], b0[q], av[r], 0);
        acc[4 * r + q] = vdotq_lane_s32(acc[4 * r + q], b1[q], av[r], 1);
      }
  }
  for (std::size_t r = 0; r < MR; ++r)
    for (std::size_t q = 0; q < 4; ++q) vst1q_s32(c + r * ldc + 4 * q, acc[4 * r + q]);
}

void ukernel_4x16c4(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
                    const int8_t* b, int32_t* c, std::size_t ldc) {
  switch (mr) {
    case 1: return ukernel_mr<1>(kp, a, lda, b, c, ldc);
    case 2: return ukernel_mr<2>(kp, a, lda, b, c, ldc);
    case 3: return ukernel_mr<3>(kp, a, lda, b, c, ldc);
    default: return ukernel_mr<4>(kp, a, lda, b, c, ldc);
  }
}

}  // namespace

GemmKernels gemm_kernels_neondot() {
  return GemmKernels{Isa::kNeonDot, AFormat::kS8, kMR, ukernel_4x16c4};
}

}  // namespace edgepack
