// AVX2 sparse kernel (kU8). AVX2 has no exact u8 x s8 dot product (vpmaddubsw saturates at
// 2 x 255 x 127), so activations and weights are widened to int16 and multiplied with vpmaddwd
// (exact int32 pair sums); the two pair sums of a 4-k group are folded with vphaddd at the end.
//
// GEMV (ldm == 1): per slice two halves of 8 lanes; per step vpgatherdd 8 activation dwords per
// half by block index, vpmovzxbw / vpmovsxbw both sides, vpmaddwd, vpaddd into accumulators that
// hold [lane: pair0, pair1] x 4 lanes; vphaddd + vpermq fold them into 8 lane sums.
//
// Tiles (panels of 8 rows, transposed in groups of 4 k): see panel_pass.
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"
#include "sparse/sparse_run.h"

namespace edgepack {
namespace {

constexpr std::size_t kPrefetchSteps = 16;  // ~1 KiB of values ahead (prefetch never faults)

// The blocks stream from L3/DRAM; without a software prefetch each step waits a miss latency.
inline void prefetch_step(const SparseView& v, std::size_t e) {
  _mm_prefetch(reinterpret_cast<const char*>(v.idx + (e + kPrefetchSteps) * kSparseSlice),
               _MM_HINT_T0);
  for (std::size_t t = 0; t < v.t; ++t)
    _mm_prefetch(reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * v.t + t) * 64),
                 _MM_HINT_T0);
}

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
      prefetch_step(v, e);
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
        acc_q[0] = _mm256_add_epi32(acc_q[0],
                                    madd_u8s8(_mm256_castsi256_si128(gl), _mm_loadu_si128(wp + 0)));
        acc_q[1] = _mm256_add_epi32(
            acc_q[1], madd_u8s8(_mm256_extracti128_si256(gl, 1), _mm_loadu_si128(wp + 1)));
        acc_q[2] = _mm256_add_epi32(acc_q[2],
                                    madd_u8s8(_mm256_castsi256_si128(gh), _mm_loadu_si128(wp + 2)));
        acc_q[3] = _mm256_add_epi32(
            acc_q[3], madd_u8s8(_mm256_extracti128_si256(gh, 1), _mm_loadu_si128(wp + 3)));
      }
    }
    int32_t* out = acc + (s - s_begin) * kSparseSlice;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), fold_pairs(acc_q[0], acc_q[1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), fold_pairs(acc_q[2], acc_q[3]));
  }
}

// One panel of 8 tile rows against one slice, 4 lanes per pass (8 accumulators): per step, per
// lane, the 4 weights are widened once and broadcast, and the lane's 32-byte panel run (8 rows x
// 4 k) is widened in two halves and vpmaddwd-ed. idx and values stream in order.
void panel_pass(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                std::size_t ldm) {
  const std::size_t t_count = v.t;
  for (std::size_t lg = 0; lg < kSparseSlice; lg += 4) {
    __m256i acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_si256();
    for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
      if (lg == 0) prefetch_step(v, e);
      const uint16_t* ix = v.idx + e * kSparseSlice + lg;
      for (std::size_t t = 0; t < t_count; ++t) {
        const int8_t* w = v.values + (e * t_count + t) * 64 + lg * 4;
        for (int l = 0; l < 4; ++l) {
          int32_t wd;
          std::memcpy(&wd, w + 4 * l, 4);
          const __m256i wb = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(wd)));
          const uint8_t* ap = panel + (std::size_t{ix[l]} * t_count + t) * 32;
          const __m256i a0 =
              _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ap)));
          const __m256i a1 =
              _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ap + 16)));
          acc[2 * l] = _mm256_add_epi32(acc[2 * l], _mm256_madd_epi16(a0, wb));
          acc[2 * l + 1] = _mm256_add_epi32(acc[2 * l + 1], _mm256_madd_epi16(a1, wb));
        }
      }
    }
    for (int l = 0; l < 4; ++l)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (lg + l) * ldm),
                          fold_pairs(acc[2 * l], acc[2 * l + 1]));
  }
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  sparse_run_panels<8>(v, at, ldm, s_begin, s_end, acc, gemv, panel_pass);
}

}  // namespace

SparseKernels sparse_kernels_avx2() {
  return SparseKernels{Isa::kAvx2, AFormat::kU8, 8, 8, 8, run, nullptr, nullptr};
}

}  // namespace edgepack
