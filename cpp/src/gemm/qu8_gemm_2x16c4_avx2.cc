// AVX2 micro-kernel, 2 rows x 16 columns, c4 groups. Exact over the full u8 x s8 range.
//
// Scheme: per 4-k group, the 64-byte panel group is read as four 16-byte slices (4 columns x 4 k
// each) and sign-extended to int16 with vpmovsxbw; the row's 4 A bytes are broadcast and
// zero-extended to int16 with one vpshufb ([a0 a1 a2 a3] repeated). vpmaddwd multiplies int16
// pairs and adds adjacent products into int32: |a*w + a'*w'| <= 2 * 255 * 128 = 65280, far from
// int32 limits, and int16 inputs never saturate (unlike vpmaddubsw, whose int16 pair sum can
// reach 2 * 255 * 127 > 32767). vpaddd accumulates, each lane holding (column, k-pair) partial
// sums; at the end vphaddd folds the pairs and a vpermd restores column order.
// Why 2 rows: each row needs 4 ymm accumulators (16 columns x 2 pair-sums); 2 rows + 4 widened
// B slices + A fit the 16 ymm registers without spills. A is read as uint8 (AFormat::kU8).
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

inline __m256i bcast_a(const uint8_t* p, __m256i spread) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_shuffle_epi8(_mm256_set1_epi32(v), spread);
}

template <int MR>
void ukernel_t(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
               std::size_t ldc) {
  // Byte i of each 128-bit lane -> int16 lane i/2 (zero-extended): [a0 0 a1 0 a2 0 a3 0] x2.
  const __m256i spread = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1,
                                          0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1);
  __m256i acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_si256();
  for (std::size_t k = 0; k < kp; k += 4, b += 64) {
    __m256i bw[4];
    for (int j = 0; j < 4; ++j)
      bw[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j)));
    for (int r = 0; r < MR; ++r) {
      const __m256i aw = bcast_a(a + r * lda + k, spread);
      for (int j = 0; j < 4; ++j)
        acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(bw[j], aw));
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
