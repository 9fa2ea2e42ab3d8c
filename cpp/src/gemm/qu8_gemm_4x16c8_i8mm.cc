// i8mm (Armv8.6 matrix multiply) int8 GEMM micro-kernel, tile 4x16, A format kU8.
//
// Scheme, per 8 k (two c4n16 groups of 64 bytes):
//   - usmmla multiplies a 2x8 uint8 block (two rows of A, 8 k each) by an 8x2 int8 block (two
//     columns of B, given as 2 rows of 8 k) and adds the 2x2 int32 result to an accumulator
//     [r0c0 r0c1 r1c0 r1c1]. usmmla (unsigned x signed) reads a_u8 directly: no -128 bias.
//   - B: in c4n16, 16 bytes at offset 16q of group g are [col 4q: k 4g..4g+3][col 4q+1]...
//     [col 4q+3]. Zipping the 32-bit lanes of the same 16 bytes of two consecutive groups
//     (zip1/zip2 .4s) gives [col 4q: k0..3][col 4q: k4..7][col 4q+1: k0..3][col 4q+1: k4..7],
//     i.e. the 2x8 block of columns (4q, 4q+1), and zip2 the block of (4q+2, 4q+3).
//   - A: rows pair up, two 8-byte loads combined into one q register; an odd last row is
//     paired with itself (same pointer, nothing read out of bounds) and its twin not stored.
//   - Results: the 2x2 tiles of columns (4q, 4q+1) and (4q+2, 4q+3) are de-interleaved with
//     zip1/zip2 .2d into row 0 and row 1 of columns 4q..4q+3.
//   Registers: 2 row pairs x 8 column pairs = 16 accumulators + 2 A + 8 B blocks.
//
// Why exact: usmmla forms each of the 8 products a_u8 * w (0..255 x -128..127, |p| <= 32640)
// exactly and adds their sum (|s| <= 261120) to the int32 lane; there is no narrower
// intermediate. The int32 accumulation is exact while the sum fits int32 (K <= kMaxK) and
// otherwise equals the reference modulo 2^32.
#include <arm_neon.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kMR = 4;

template <std::size_t MR>
void ukernel_mr(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
                std::size_t ldc) {
  constexpr std::size_t P = (MR + 1) / 2;  // row pairs
  const uint8_t* rows[2 * P];
  for (std::size_t r = 0; r < 2 * P; ++r) rows[r] = a + (r < MR ? r : MR - 1) * lda;
  int32x4_t acc[P][8];
  for (std::size_t p = 0; p < P; ++p)
    for (std::size_t j = 0; j < 8; ++j) acc[p][j] = vdupq_n_s32(0);
  for (std::size_t k = 0; k < kp; k += 8, b += 2 * 4 * kNR) {
    uint8x16_t av[P];
    for (std::size_t p = 0; p < P; ++p)
      av[p] = vcombine_u8(vld1_u8(rows[2 * p] + k), vld1_u8(rows[2 * p + 1] + k));
    for (std::size_t q = 0; q < 4; ++q) {
      const int32x4_t g0 = vreinterpretq_s32_s8(vld1q_s8(b + 16 * q));
      const int32x4_t g1 = vreinterpretq_s32_s8(vld1q_s8(b + 4 * kNR + 16 * q));
      const int8x16_t blk0 = vreinterpretq_s8_s32(vzip1q_s32(g0, g1));
      const int8x16_t blk1 = vreinterpretq_s8_s32(vzip2q_s32(g0, g1));
      for (std::size_t p = 0; p < P; ++p) {
        acc[p][2 * q] = vusmmlaq_s32(acc[p][2 * q], av[p], blk0);
        acc[p][2 * q + 1] = vusmmlaq_s32(acc[p][2 * q + 1], av[p], blk1);
      }
    }
  }
  for (std::size_t p = 0; p < P; ++p)
    for (std::size_t q = 0; q < 4; ++q) {
      const int64x2_t t0 = vreinterpretq_s64_s32(acc[p][2 * q]);
      const int64x2_t t1 = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
      vst1q_s32(c + 2 * p * ldc + 4 * q, vreinterpretq_s32_s64(vzip1q_s64(t0, t1)));
      if (2 * p + 1 < MR)
        vst1q_s32(c + (2 * p + 1) * ldc + 4 * q, vreinterpretq_s32_s64(vzip2q_s64(t0, t1)));
    }
}

void ukernel_4x16c8(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
                    const int8_t* b, int32_t* c, std::size_t ldc) {
  switch (mr) {
    case 1: return ukernel_mr<1>(kp, a, lda, b, c, ldc);
    case 2: return ukernel_mr<2>(kp, a, lda, b, c, ldc);
    case 3: return ukernel_mr<3>(kp, a, lda, b, c, ldc);
    default: return ukernel_mr<4>(kp, a, lda, b, c, ldc);
  }
}

}  // namespace

GemmKernels gemm_kernels_i8mm() {
  return GemmKernels{Isa::kI8mm, AFormat::kU8, kMR, ukernel_4x16c8};
}

}  // namespace edgepack
