// AVX-512 VNNI sparse kernel (kU8: vpdpbusd multiplies uint8 activations by int8 weights and
// adds groups of 4 products into int32 lanes with no intermediate saturation, so it is exact).
//
// GEMV (one row, ldm == 1): one zmm accumulator = the 16 lanes (rows) of a slice. Per step and
// 4-k group: vpmovzxwd the 16 block indices, vpgatherdd the 16 activation dwords they point at,
// vpdpbusd against the 64 value bytes, which the layout already stores in lane order. No
// horizontal reduction, no per-row loop; two accumulators alternate to hide vpdpbusd latency.
//
// Tiles (ldm = 16..64 rows, transposed in groups of 4 k): per lane (row n) and stored block,
// vpbroadcastd the block's 4 weights and vpdpbusd them against ldm/16 contiguous zmm loads of
// the activation tile: 64 rows x 4 k = 256 MACs per block for ~6 instructions.
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  const int tshift = v.t == 1 ? 0 : (v.t == 2 ? 1 : 2);
  for (std::size_t s = s_begin; s < s_end; ++s) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    const std::size_t e0 = v.slice_ptr[s], e1 = v.slice_ptr[s + 1];
    for (std::size_t e = e0; e < e1; ++e) {
      const __m512i j = _mm512_slli_epi32(
          _mm512_cvtepu16_epi32(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v.idx + e * kSparseSlice))),
          tshift);
      const int8_t* w = v.values + e * v.t * (kSparseSlice * 4);
      for (std::size_t t = 0; t < v.t; ++t) {
        const __m512i jt = _mm512_add_epi32(j, _mm512_set1_epi32(static_cast<int>(t)));
        const __m512i g = _mm512_i32gather_epi32(jt, a, 4);
        const __m512i wv = _mm512_loadu_si512(w + t * 64);
        if (((e - e0) + t) & 1)
          acc1 = _mm512_dpbusd_epi32(acc1, g, wv);
        else
          acc0 = _mm512_dpbusd_epi32(acc0, g, wv);
      }
    }
    _mm512_storeu_si512(acc + (s - s_begin) * kSparseSlice, _mm512_add_epi32(acc0, acc1));
  }
}

// One lane's row over NC chunks of 16 tile rows starting at `a` (already offset by the chunk).
template <int NC>
void row_tile(const SparseView& v, std::size_t s, std::size_t lane, const uint8_t* at,
              std::size_t ldm, std::size_t c0, int32_t* out) {
  __m512i acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_si512();
  const std::size_t cnt = v.row_nblk[s * kSparseSlice + lane];
  const std::size_t e0 = v.slice_ptr[s];
  const std::size_t stride = ldm * 4;
  for (std::size_t i = 0; i < cnt; ++i) {
    const std::size_t e = e0 + i;
    const std::size_t j = v.idx[e * kSparseSlice + lane];
    for (std::size_t t = 0; t < v.t; ++t) {
      int32_t wd;
      std::memcpy(&wd, v.values + ((e * v.t + t) * kSparseSlice + lane) * 4, 4);
      const __m512i wb = _mm512_set1_epi32(wd);
      const uint8_t* ap = at + (j * v.t + t) * stride + c0 * 64;
      for (int c = 0; c < NC; ++c)
        acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_loadu_si512(ap + c * 64), wb);
    }
  }
  for (int c = 0; c < NC; ++c) _mm512_storeu_si512(out + (c0 + c) * 16, acc[c]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  const std::size_t nc = ldm / 16;
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      int32_t* out = acc + ((s - s_begin) * kSparseSlice + lane) * ldm;
      std::size_t c0 = 0;
      for (; c0 + 4 <= nc; c0 += 4) row_tile<4>(v, s, lane, at, ldm, c0, out);
      switch (nc - c0) {
        case 3: row_tile<3>(v, s, lane, at, ldm, c0, out); break;
        case 2: row_tile<2>(v, s, lane, at, ldm, c0, out); break;
        case 1: row_tile<1>(v, s, lane, at, ldm, c0, out); break;
        default: break;
      }
    }
}

}  // namespace

SparseKernels sparse_kernels_avx512vnni() {
  return SparseKernels{Isa::kAvx512Vnni, AFormat::kU8, 16, run};
}

}  // namespace edgepack
