// AVX2 micro-kernel, up to kMR rows x 16 columns, c4 groups. Exact over the full u8 x s8 range.
//
// Exactness: vpmaddwd on int16 operands cannot saturate: each int32 lane receives
// a*w + a'*w' with |a*w + a'*w'| <= 2 * 255 * 128 = 65280 (vpmaddubsw, by contrast, saturates its
// int16 pair sum, which can reach 2 * 255 * 127 > 32767), and vpaddd accumulates in int32, which
// wraps; the driver's kMaxK bound keeps every true sum inside int32.
//
// Cost model: every 16 MACs cost one vpmaddwd and one vpaddd, the floor for an exact
// full-range AVX2 scheme (vpmaddwd is the widest non-saturating multiply). Everything else is
// overhead to amortize: the vpmovsxbw that widens B (one per 4 columns x 4 k, shared by all the
// rows of the tile) and the A broadcasts (pure loads). The accumulators bound the rows: each
// (row, 4-column slice) needs one ymm of (column, k-pair) partial sums, so the panel is walked
// in column passes of S slices:
//   MR rows x S slices accumulators + S widened B slices + 1 A broadcast <= 16 ymm.
// Full tiles: 6 rows x 2 slices (8 columns) per pass, 12 + 2 + 1 = 15 registers, each widened B
// slice serving 6 rows (the former 2x16 tile served 2). Measured on the dev Xeon: 6x8 passes beat
// 12x4 and 8x4 passes (fewer loads per multiply), 1.1-1.18x the 2x16 tile. Tiles of 1-2 rows
// take all 4 slices in one pass (one A read per group).
//  - A: at the start of every K block (512 k) the rows are zero-extended once into an int16
//    stack buffer, so the [a0 a1 a2 a3] pattern a group needs is one vpbroadcastq from memory
//    (a load, no shuffle port).
//  - B: per K block, each pass re-reads its slices of the block's groups (8 KiB, L1-resident).
//    Partial sums of a pass live in a small memory tile between K blocks.
//  - Each lane accumulates one (column, k-pair) partial sum; at the end vphaddd folds the pairs
//    and vpermd restores column order.
// A is read as uint8 (AFormat::kU8).
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kKB = 512;  // K block: kMR rows x 512 int16 = 6 KiB of stack
constexpr int kMR = 6;            // rows per call

// Zero-extends n (a multiple of 8) bytes of src into int16 dst.
inline void widen(const uint8_t* src, int16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_store_si256(
        reinterpret_cast<__m256i*>(dst + i),
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

inline __m256i widen_b(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// One pass over the groups of a K block: kl k values, columns of slices s0..s0+kSlices-1.
template <int MR, int kSlices>
inline void pass(std::size_t kl, const int16_t (*aw)[kKB], const int8_t* bg,
                 __m256i (*acc)[kSlices]) {
  __m256i x[MR][kSlices];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kSlices; ++j) x[r][j] = acc[r][j];
  for (std::size_t k = 0; k < kl; k += 4, bg += 64) {
    __m256i bw[kSlices];
    for (int j = 0; j < kSlices; ++j) bw[j] = widen_b(bg + 16 * j);
    for (int r = 0; r < MR; ++r) {
      const __m256i av = bcast4(aw[r] + k);
      for (int j = 0; j < kSlices; ++j)
        x[r][j] = _mm256_add_epi32(x[r][j], _mm256_madd_epi16(bw[j], av));
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kSlices; ++j) acc[r][j] = x[r][j];
}

template <int MR, int kSlices = (MR <= 2 ? 4 : 2)>  // MR <= kMR = 6
void ukernel_t(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
               std::size_t ldc) {
  constexpr int kPasses = 4 / kSlices;
  alignas(32) int16_t aw[MR][kKB];
  __m256i acc[kPasses][MR][kSlices];
  for (int p = 0; p < kPasses; ++p)
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < kSlices; ++j) acc[p][r][j] = _mm256_setzero_si256();
  for (std::size_t k0 = 0; k0 < kp; k0 += kKB) {
    const std::size_t kl = kp - k0 < kKB ? kp - k0 : kKB;  // a multiple of 8
    for (int r = 0; r < MR; ++r) widen(a + r * lda + k0, aw[r], kl);
    const int8_t* bg = b + k0 * kNR;  // group k0/4 starts at byte 64 * k0/4
    for (int p = 0; p < kPasses; ++p) pass<MR, kSlices>(kl, aw, bg + 16 * kSlices * p, acc[p]);
  }
  const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < 4; s += 2) {
      // Slices s, s+1 = 8 columns. hadd within lanes: [c0 c1 c4 c5 | c2 c3 c6 c7] -> vpermd.
      const __m256i h = _mm256_hadd_epi32(acc[s / kSlices][r][s % kSlices],
                                          acc[(s + 1) / kSlices][r][(s + 1) % kSlices]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 4 * s),
                          _mm256_permutevar8x32_epi32(h, order));
    }
}

void ukernel(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b,
             int32_t* c, std::size_t ldc) {
  switch (mr) {
    case 6:
      ukernel_t<6>(kp, a, lda, b, c, ldc);
      break;
    case 5:
      ukernel_t<5>(kp, a, lda, b, c, ldc);
      break;
    case 4:
      ukernel_t<4>(kp, a, lda, b, c, ldc);
      break;
    case 3:
      ukernel_t<3>(kp, a, lda, b, c, ldc);
      break;
    case 2:
      ukernel_t<2>(kp, a, lda, b, c, ldc);
      break;
    default:
      ukernel_t<1>(kp, a, lda, b, c, ldc);
      break;
  }
}

}  // namespace

GemmKernels gemm_kernels_avx2() { return GemmKernels{Isa::kAvx2, AFormat::kU8, kMR, ukernel}; }

}  // namespace edgepack
