// AVX-512 VNNI sparse kernel (kU8: vpdpbusd multiplies uint8 activations by int8 weights and
// adds groups of 4 products into int32 lanes with no intermediate saturation, so it is exact).
//
// GEMV (one row, ldm == 1): one zmm accumulator = the 16 lanes (rows) of a slice. Per step and
// 4-k group: vpmovzxwd the 16 block indices, vpgatherdd the 16 activation dwords they point at,
// vpdpbusd against the 64 value bytes, which the layout already stores in lane order. No
// horizontal reduction, no per-row loop; two accumulators alternate to hide vpdpbusd latency.
//
// Tiles (panels of 16 rows, transposed in groups of 4 k): see panel_pass. 64 MACs per block
// for one 64-byte load, one broadcast and one vpdpbusd; a panel of K = 4096 is 64 KiB, so it
// stays in L1/L2 while the slice's blocks stream past.
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

// One panel of 16 tile rows against one slice, step by step: per step and 4-k group, for each
// of the 16 lanes, vpbroadcastd its 4 weights and vpdpbusd them against the 64-byte panel run
// (16 rows x 4 k) its block index points at. 16 independent accumulators (one per lane) hide
// the vpdpbusd latency; idx and values stream in order.
void panel_pass(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                std::size_t ldm) {
  __m512i acc[16];
  for (int l = 0; l < 16; ++l) acc[l] = _mm512_setzero_si512();
  const std::size_t t_count = v.t;
  for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
    const uint16_t* ix = v.idx + e * kSparseSlice;
    for (std::size_t t = 0; t < t_count; ++t) {
      const int8_t* w = v.values + (e * t_count + t) * 64;
      for (int l = 0; l < 16; ++l) {
        int32_t wd;
        std::memcpy(&wd, w + 4 * l, 4);
        const uint8_t* ap = panel + (std::size_t{ix[l]} * t_count + t) * 64;
        acc[l] = _mm512_dpbusd_epi32(acc[l], _mm512_loadu_si512(ap), _mm512_set1_epi32(wd));
      }
    }
  }
  for (int l = 0; l < 16; ++l) _mm512_storeu_si512(out + l * ldm, acc[l]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  const std::size_t panel_bytes = std::size_t{v.kb} * v.t * 64;
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t p = 0; p < ldm / 16; ++p)
      panel_pass(v, s, at + p * panel_bytes, acc + (s - s_begin) * kSparseSlice * ldm + p * 16,
                 ldm);
}

}  // namespace

SparseKernels sparse_kernels_avx512vnni() {
  return SparseKernels{Isa::kAvx512Vnni, AFormat::kU8, 16, run};
}

}  // namespace edgepack
