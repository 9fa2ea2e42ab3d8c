// i8mm (Armv8.6 matrix multiply) int8 GEMM micro-kernel, tile 8x16, A format kU8.
//
// Scheme, per 8 k (two c4n16 groups of 64 bytes), in two passes over K of 8 columns each (so
// 4 row pairs x 4 column pairs = 16 accumulators fit the register file with the B blocks):
//   - usmmla multiplies a 2x8 uint8 block (two rows of A, 8 k each) by an 8x2 int8 block (two
//     columns of B, given as 2 rows of 8 k) and adds the 2x2 int32 result to an accumulator
//     [r0c0 r0c1 r1c0 r1c1]. usmmla (unsigned x signed) reads a_u8 directly: no -128 bias.
//   - B: in c4n16, 16 bytes at offset 16q of group g are [col 4q: k 4g..4g+3][col 4q+1]...
//     [col 4q+3]. Zipping the 32-bit lanes of the same 16 bytes of two consecutive groups
//     (zip1/zip2 .4s) gives [col 4q: k0..3][col 4q: k4..7][col 4q+1: k0..3][col 4q+1: k4..7],
//     i.e. the 2x8 block of columns (4q, 4q+1), and zip2 the block of (4q+2, 4q+3).
//   - A: rows pair up, two 8-byte loads combined into one q register. An odd last row (and
//     mr = 1, the GEMV case) uses sudot by element instead (signed B vector x unsigned A bytes,
//     also i8mm): it reads the unzipped groups like the dotprod kernel, at half the cost of an
//     usmmla on a duplicated row.
//   - Results: the 2x2 tiles of columns (4q, 4q+1) and (4q+2, 4q+3) are de-interleaved with
//     zip1/zip2 .2d into row 0 and row 1 of columns 4q..4q+3.
//   Registers per pass: 16 accumulators + 4 A pairs + 4 B loads + 4 zipped blocks = 28 of 32.
//
// Why exact: usmmla forms each of the 8 products a_u8 * w (0..255 x -128..127, |p| <= 32640)
// exactly and adds their sum (|s| <= 261120) to the int32 lane; sudot does the same with 4
// products. There is no narrower intermediate, so the int32 accumulation is exact while the sum
// fits int32 (K <= kMaxK) and otherwise equals the reference modulo 2^32.
#include <arm_neon.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kMR = 8;

template <std::size_t MR>
void ukernel_mr(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
                std::size_t ldc) {
  constexpr std::size_t P = MR / 2;       // row pairs (usmmla)
  constexpr bool kOdd = MR % 2 == 1;      // last row alone (sudot)
  constexpr std::size_t PA = P > 0 ? P : 1;  // array sizes must be positive
  for (std::size_t half = 0; half < 2; ++half) {
    const int8_t* bh = b + half * 8 * 4;  // columns 8*half.. start 32 bytes into each group
    int32x4_t acc[PA][4];
    int32x4_t acc_odd[2];
    for (std::size_t p = 0; p < P; ++p)
      for (std::size_t j = 0; j < 4; ++j) acc[p][j] = vdupq_n_s32(0);
    acc_odd[0] = acc_odd[1] = vdupq_n_s32(0);
    for (std::size_t k = 0; k < kp; k += 8, bh += 2 * 4 * kNR) {
      uint8x16_t av[PA];
      for (std::size_t p = 0; p < P; ++p)
        av[p] = vcombine_u8(vld1_u8(a + 2 * p * lda + k), vld1_u8(a + (2 * p + 1) * lda + k));
      uint8x8_t ao = vdup_n_u8(0);
      if (kOdd) ao = vld1_u8(a + (MR - 1) * lda + k);
      for (std::size_t q = 0; q < 2; ++q) {
        const int8x16_t g0 = vld1q_s8(bh + 16 * q);
        const int8x16_t g1 = vld1q_s8(bh + 4 * kNR + 16 * q);
        if (P > 0) {
          const int32x4_t g0w = vreinterpretq_s32_s8(g0), g1w = vreinterpretq_s32_s8(g1);
          const int8x16_t blk0 = vreinterpretq_s8_s32(vzip1q_s32(g0w, g1w));
          const int8x16_t blk1 = vreinterpretq_s8_s32(vzip2q_s32(g0w, g1w));
          for (std::size_t p = 0; p < P; ++p) {
            acc[p][2 * q] = vusmmlaq_s32(acc[p][2 * q], av[p], blk0);
            acc[p][2 * q + 1] = vusmmlaq_s32(acc[p][2 * q + 1], av[p], blk1);
          }
        }
        if (kOdd) {
          acc_odd[q] = vsudotq_lane_s32(acc_odd[q], g0, ao, 0);
          acc_odd[q] = vsudotq_lane_s32(acc_odd[q], g1, ao, 1);
        }
      }
    }
    int32_t* ch = c + half * 8;
    for (std::size_t p = 0; p < P; ++p)
      for (std::size_t q = 0; q < 2; ++q) {
        const int64x2_t t0 = vreinterpretq_s64_s32(acc[p][2 * q]);
        const int64x2_t t1 = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
        vst1q_s32(ch + 2 * p * ldc + 4 * q, vreinterpretq_s32_s64(vzip1q_s64(t0, t1)));
        vst1q_s32(ch + (2 * p + 1) * ldc + 4 * q, vreinterpretq_s32_s64(vzip2q_s64(t0, t1)));
      }
    if (kOdd)
      for (std::size_t q = 0; q < 2; ++q) vst1q_s32(ch + (MR - 1) * ldc + 4 * q, acc_odd[q]);
  }
}

void ukernel_8x16c8(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
                    const int8_t* b, int32_t* c, std::size_t ldc) {
  switch (mr) {
    case 1: return ukernel_mr<1>(kp, a, lda, b, c, ldc);
    case 2: return ukernel_mr<2>(kp, a, lda, b, c, ldc);
    case 3: return ukernel_mr<3>(kp, a, lda, b, c, ldc);
    case 4: return ukernel_mr<4>(kp, a, lda, b, c, ldc);
    case 5: return ukernel_mr<5>(kp, a, lda, b, c, ldc);
    case 6: return ukernel_mr<6>(kp, a, lda, b, c, ldc);
    case 7: return ukernel_mr<7>(kp, a, lda, b, c, ldc);
    default: return ukernel_mr<8>(kp, a, lda, b, c, ldc);
  }
}

}  // namespace

GemmKernels gemm_kernels_i8mm() {
  return GemmKernels{Isa::kI8mm, AFormat::kU8, kMR, ukernel_8x16c8};
}

}  // namespace edgepack
