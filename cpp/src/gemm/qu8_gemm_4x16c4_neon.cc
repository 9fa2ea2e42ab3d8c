// NEON (AArch64 baseline, no dotprod) int8 GEMM micro-kernel, tile 4x16, A format kU8.
//
// Scheme, per 8 k (two c4n16 groups of 64 bytes):
//   - each group is loaded with one ld4 (vld4q_s8): ld4 de-interleaves bytes by position mod 4,
//     and in c4n16 byte 4*n + j of a group is (column n, k = 4g + j), so register j holds the 16
//     columns at k = 4g + j: a free transpose from the packed layout to one vector per k.
//   - each such vector is sign-extended to int16 (sxtl/sxtl2: columns 0..7 and 8..15);
//   - per row, 8 bytes of A are zero-extended to uint16 (uxtl; 0..255 is also a valid int16);
//   - smlal/smlal2 by element (vmlal_laneq_s16 / vmlal_high_laneq_s16) multiply 4 columns of B
//     by one broadcast A element and accumulate into int32: 16 accumulators (4 rows x 4 quads).
//   Registers: 16 accumulators + 4 A rows + 4 ld4 + 2 widened B = 26 of 32.
//
// Why exact: every product is a_u8 * w with 0 <= a_u8 <= 255 and -128 <= w <= 127, formed by
// smlal as a full int16 x int16 -> int32 product (no rounding, no saturation; |a*w| <= 32640),
// and added to an int32 accumulator. There is no intermediate int16 sum anywhere, so the only
// arithmetic is the int32 accumulation, which is the exact sum whenever that sum fits int32
// (the gemm.h bound K <= kMaxK) and otherwise equals it modulo 2^32 like the reference's cast.
#include <arm_neon.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kMR = 4;

// acc[4*r + q] += B(k, columns 4q..4q+3) * A(r, k) for the k held in lane L of a[r].
template <std::size_t MR, int L>
inline void madd_k(int32x4_t* acc, const int16x8_t* a, int16x8_t b_lo, int16x8_t b_hi) {
  for (std::size_t r = 0; r < MR; ++r) {
    acc[4 * r + 0] = vmlal_laneq_s16(acc[4 * r + 0], vget_low_s16(b_lo), a[r], L);
    acc[4 * r + 1] = vmlal_high_laneq_s16(acc[4 * r + 1], b_lo, a[r], L);
    acc[4 * r + 2] = vmlal_laneq_s16(acc[4 * r + 2], vget_low_s16(b_hi), a[r], L);
    acc[4 * r + 3] = vmlal_high_laneq_s16(acc[4 * r + 3], b_hi, a[r], L);
  }
}

// One 64-byte group (k = 4g..4g+3): A lanes L0..L0+3 of a[r] hold those four k.
template <std::size_t MR, int L0>
inline void madd_group(int32x4_t* acc, const int16x8_t* a, const int8_t* group) {
  const int8x16x4_t b = vld4q_s8(group);
  madd_k<MR, L0 + 0>(acc, a, vmovl_s8(vget_low_s8(b.val[0])), vmovl_high_s8(b.val[0]));
  madd_k<MR, L0 + 1>(acc, a, vmovl_s8(vget_low_s8(b.val[1])), vmovl_high_s8(b.val[1]));
  madd_k<MR, L0 + 2>(acc, a, vmovl_s8(vget_low_s8(b.val[2])), vmovl_high_s8(b.val[2]));
  madd_k<MR, L0 + 3>(acc, a, vmovl_s8(vget_low_s8(b.val[3])), vmovl_high_s8(b.val[3]));
}

template <std::size_t MR>
void ukernel_mr(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
                std::size_t ldc) {
  int32x4_t acc[4 * MR];
  for (std::size_t i = 0; i < 4 * MR; ++i) acc[i] = vdupq_n_s32(0);
  for (std::size_t k = 0; k < kp; k += 8, b += 2 * 4 * kNR) {
    int16x8_t av[MR];
    for (std::size_t r = 0; r < MR; ++r)
      av[r] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(a + r * lda + k)));
    madd_group<MR, 0>(acc, av, b);
    madd_group<MR, 4>(acc, av, b + 4 * kNR);
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

GemmKernels gemm_kernels_neon() {
  return GemmKernels{Isa::kNeon, AFormat::kU8, kMR, ukernel_4x16c4};
}

}  // namespace edgepack
