// AVX2 micro-kernel, 2 rows x 16 columns, c4 groups. Exact over the full u8 x s8 range.
//
// Scheme: vpmaddwd on int16 operands, which cannot saturate: each int32 lane receives
// a*w + a'*w' with |a*w + a'*w'| <= 2 * 255 * 128 = 65280 (vpmaddubsw, by contrast, saturates its
// int16 pair sum, which can reach 2 * 255 * 127 > 32767), and vpaddd accumulates in int32.
//  - B: per 4-k group, the 64-byte panel group is read as four 16-byte slices (4 columns x 4 k)
//    and sign-extended with vpmovsxbw; each widened slice serves both rows.
//  - A: at the start of every K block (512 k) the two rows are zero-extended once into an int16
//    stack buffer, so the [a0 a1 a2 a3] pattern a group needs is one vpbroadcastq from memory
//    (a load, no shuffle port) instead of a broadcast plus a vpshufb per row and group.
//  - Each lane accumulates one (column, k-pair) partial sum; at the end vphaddd folds the pairs
//    and vpermd restores column order.
// Why 2 rows: 16 columns x 2 pair-sums = 4 ymm accumulators per row; 2 rows + 4 widened B
// slices + the A broadcast fit the 16 ymm registers without spills. A is read as uint8
// (AFormat::kU8).
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kKB = 512;  // K block: 2 rows x 512 int16 = 2 KiB of stack

// Zero-extends n (a multiple of 8) bytes of src into int16 dst.
inline void widen(const uint8_t* src, int16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i),
                       _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  if (i < n)
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i),
                    _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i))));
}

inline __m256i bcast4(const int16_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);
}

template <int MR>
void ukernel_t(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
               std::size_t ldc) {
  alignas(32) int16_t aw[MR][kKB];
  __m256i acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_si256();
  for (std::size_t k0 = 0; k0 < kp; k0 += kKB) {
    const std::size_t kl = kp - k0 < kKB ? kp - k0 : kKB;  // a multiple of 8
    for (int r = 0; r < MR; ++r) widen(a + r * lda + k0, aw[r], kl);
    const int8_t* bg = b + k0 * kNR;  // group k0/4 starts at byte 64 * k0/4
    for (std::size_t k = 0; k < kl; k += 4, bg += 64) {
      __m256i bw[4];
      for (int j = 0; j < 4; ++j)
        bw[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bg + 16 * j)));
      for (int r = 0; r < MR; ++r) {
        const __m256i av = bcast4(aw[r] + k);
        for (int j = 0; j < 4; ++j)
          acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(bw[j], av));
      }
    }
  }
  const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  for (int r = 0; r < MR; ++r) {
    // hadd within lanes: [c0 c1 c4 c5 | c2 c3 c6 c7] -> vpermd -> c0..c7.
    const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[r][0], acc[r][1]), order);
    const __m256i hi = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[r][2], acc[r][3]), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), hi);
  }
}

void ukernel(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
             const int8_t* b, int32_t* c, std::size_t ldc) {
  if (mr == 2)
    ukernel_t<2>(kp, a, lda, b, c, ldc);
  else
    ukernel_t<1>(kp, a, lda, b, c, ldc);
}

}  // namespace

GemmKernels gemm_kernels_avx2() { return GemmKernels{Isa::kAvx2, AFormat::kU8, 2, ukernel}; }

}  // namespace edgepack
