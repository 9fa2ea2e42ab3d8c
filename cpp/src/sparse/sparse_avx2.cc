// AVX2 sparse kernel (kU8). AVX2 has no exact u8 x s8 dot product (vpmaddubsw saturates at
// 2 x 255 x 127), so activations and weights are widened to int16 and multiplied with vpmaddwd
// (exact int32 pair sums); the two pair sums of a 4-k group are folded with vphaddd at the end.
//
// GEMV (ldm == 1): per slice two halves of 8 lanes; per step vpgatherdd 8 activation dwords per
// half by block index, vpmovzxbw / vpmovsxbw both sides, vpmaddwd, vpaddd into accumulators that
// hold [lane: pair0, pair1] x 4 lanes; vphaddd + vpermq fold them into 8 lane sums.
//
// Tiles (ldm = 8..64, transposed in groups of 4 k): per lane (row) and block, the 4 weights are
// widened once and broadcast (vpbroadcastq), then each 4-row x 4-k activation run (16 bytes) is
// widened and vpmaddwd-ed into one of up to 8 accumulators (32 rows per pass).
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

// [l0p0 l0p1 l1p0 l1p1 | l2p0 l2p1 l3p0 l3p1] x2 -> [l0 .. l7]
inline __m256i fold_pairs(__m256i lo, __m256i hi) {
  const __m256i h = _mm256_hadd_epi32(lo, hi);  // [l0 l1 l4 l5 | l2 l3 l6 l7]
  return _mm256_permute4x64_epi64(h, _MM_SHUFFLE(3, 1, 2, 0));
}

inline __m256i madd_u8s8(__m128i a16, __m128i w16) {
  return _mm256_madd_epi16(_mm256_cvtepu8_epi16(a16), _mm256_cvtepi8_epi16(w16));
}

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  const int tshift = v.t == 1 ? 0 : (v.t == 2 ? 1 : 2);
  const int* a32 = reinterpret_cast<const int*>(a);
  for (std::size_t s = s_begin; s < s_end; ++s) {
    __m256i acc_q[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};  // lanes 0-3, 4-7, 8-11, 12-15 (pairs)
    for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
      const __m256i jl = _mm256_slli_epi32(
          _mm256_cvtepu16_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(v.idx + e * kSparseSlice))),
          tshift);
      const __m256i jh = _mm256_slli_epi32(
          _mm256_cvtepu16_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(v.idx + e * kSparseSlice + 8))),
          tshift);
      const int8_t* w = v.values + e * v.t * (kSparseSlice * 4);
      for (std::size_t t = 0; t < v.t; ++t) {
        const __m256i tv = _mm256_set1_epi32(static_cast<int>(t));
        const __m256i gl = _mm256_i32gather_epi32(a32, _mm256_add_epi32(jl, tv), 4);
        const __m256i gh = _mm256_i32gather_epi32(a32, _mm256_add_epi32(jh, tv), 4);
        const __m128i* wp = reinterpret_cast<const __m128i*>(w + t * 64);
        acc_q[0] = _mm256_add_epi32(
            acc_q[0], madd_u8s8(_mm256_castsi256_si128(gl), _mm_loadu_si128(wp + 0)));
        acc_q[1] = _mm256_add_epi32(
            acc_q[1], madd_u8s8(_mm256_extracti128_si256(gl, 1), _mm_loadu_si128(wp + 1)));
        acc_q[2] = _mm256_add_epi32(
            acc_q[2], madd_u8s8(_mm256_castsi256_si128(gh), _mm_loadu_si128(wp + 2)));
        acc_q[3] = _mm256_add_epi32(
            acc_q[3], madd_u8s8(_mm256_extracti128_si256(gh, 1), _mm_loadu_si128(wp + 3)));
      }
    }
    int32_t* out = acc + (s - s_begin) * kSparseSlice;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), fold_pairs(acc_q[0], acc_q[1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), fold_pairs(acc_q[2], acc_q[3]));
  }
}

// One lane's row over NQ groups of 4 tile rows starting at row r0 (NQ even, <= 8).
template <int NQ>
void row_tile(const SparseView& v, std::size_t s, std::size_t lane, const uint8_t* at,
              std::size_t ldm, std::size_t r0, int32_t* out) {
  __m256i acc[NQ];
  for (int q = 0; q < NQ; ++q) acc[q] = _mm256_setzero_si256();
  const std::size_t cnt = v.row_nblk[s * kSparseSlice + lane];
  const std::size_t e0 = v.slice_ptr[s];
  const std::size_t stride = ldm * 4;
  for (std::size_t i = 0; i < cnt; ++i) {
    const std::size_t e = e0 + i;
    const std::size_t j = v.idx[e * kSparseSlice + lane];
    for (std::size_t t = 0; t < v.t; ++t) {
      int32_t wd;
      std::memcpy(&wd, v.values + ((e * v.t + t) * kSparseSlice + lane) * 4, 4);
      const __m256i wb = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(wd)));
      const uint8_t* ap = at + (j * v.t + t) * stride + r0 * 4;
      for (int q = 0; q < NQ; ++q)
        acc[q] = _mm256_add_epi32(
            acc[q],
            _mm256_madd_epi16(_mm256_cvtepu8_epi16(
                                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(ap + q * 16))),
                              wb));
    }
  }
  for (int q = 0; q < NQ; q += 2)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r0 + q * 4),
                        fold_pairs(acc[q], acc[q + 1]));
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      int32_t* out = acc + ((s - s_begin) * kSparseSlice + lane) * ldm;
      std::size_t r0 = 0;
      for (; r0 + 32 <= ldm; r0 += 32) row_tile<8>(v, s, lane, at, ldm, r0, out);
      switch ((ldm - r0) / 8) {
        case 3: row_tile<6>(v, s, lane, at, ldm, r0, out); break;
        case 2: row_tile<4>(v, s, lane, at, ldm, r0, out); break;
        case 1: row_tile<2>(v, s, lane, at, ldm, r0, out); break;
        default: break;
      }
    }
}

}  // namespace

SparseKernels sparse_kernels_avx2() { return SparseKernels{Isa::kAvx2, AFormat::kU8, 8, run}; }

}  // namespace edgepack
