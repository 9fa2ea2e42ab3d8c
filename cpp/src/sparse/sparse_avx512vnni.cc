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
// stays in L1/L2 while the slice's blocks stream past. M <= 8 uses ymm panels of 8 rows.
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kPrefetchSteps = 16;  // ~1 KiB of values ahead (prefetch never faults)

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  const int tshift = v.t == 1 ? 0 : (v.t == 2 ? 1 : 2);
  for (std::size_t s = s_begin; s < s_end; ++s) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    const std::size_t e0 = v.slice_ptr[s], e1 = v.slice_ptr[s + 1];
    for (std::size_t e = e0; e < e1; ++e) {
      _mm_prefetch(reinterpret_cast<const char*>(v.idx + (e + kPrefetchSteps) * kSparseSlice),
                   _MM_HINT_T0);
      for (std::size_t t = 0; t < v.t; ++t)
        _mm_prefetch(
            reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * v.t + t) * 64),
            _MM_HINT_T0);
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
// The 16 accumulators are named registers (an indexed array makes gcc keep them on the stack
// and store/reload them every step).
template <std::size_t T>
void panel_pass_t(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                  std::size_t ldm) {
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
          c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
  for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
    const uint16_t* ix = v.idx + e * kSparseSlice;
    // The slice's blocks stream from L3/DRAM while the panel lines come from L1/L2: prefetch
    // the stream ahead, or each step waits a full miss latency (measured: 3x slower at 50%).
    _mm_prefetch(reinterpret_cast<const char*>(ix + kPrefetchSteps * kSparseSlice), _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t)
      _mm_prefetch(reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * T + t) * 64),
                   _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t) {
      const int32_t* w = reinterpret_cast<const int32_t*>(v.values + (e * T + t) * 64);
      const uint8_t* pt = panel + t * 64;
#define EP_LANE(L)                                                                        \
  c##L = _mm512_dpbusd_epi32(                                                             \
      c##L, _mm512_loadu_si512(pt + std::size_t{ix[L]} * (T * 64)), _mm512_set1_epi32(w[L]))
      EP_LANE(0); EP_LANE(1); EP_LANE(2); EP_LANE(3); EP_LANE(4); EP_LANE(5); EP_LANE(6);
      EP_LANE(7); EP_LANE(8); EP_LANE(9); EP_LANE(10); EP_LANE(11); EP_LANE(12); EP_LANE(13);
      EP_LANE(14); EP_LANE(15);
#undef EP_LANE
    }
  }
  const __m512i c[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
  for (int l = 0; l < 16; ++l) _mm512_storeu_si512(out + l * ldm, c[l]);
}

void panel_pass(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                std::size_t ldm) {
  switch (v.t) {  // the block size as a constant: shifts instead of multiplies, fewer spills
    case 1: return panel_pass_t<1>(v, s, panel, out, ldm);
    case 2: return panel_pass_t<2>(v, s, panel, out, ldm);
    default: return panel_pass_t<4>(v, s, panel, out, ldm);
  }
}

// Small tiles (M <= 8): the same pass on ymm panels of 8 rows (AVX512VL vpdpbusd), so a GEMM
// with a few rows does not pay for 16.
template <std::size_t T>
void panel8_pass_t(const SparseView& v, std::size_t s, const uint8_t* panel, int32_t* out,
                   std::size_t ldm) {
  __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
          c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
  for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
    const uint16_t* ix = v.idx + e * kSparseSlice;
    _mm_prefetch(reinterpret_cast<const char*>(ix + kPrefetchSteps * kSparseSlice), _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t)
      _mm_prefetch(reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * T + t) * 64),
                   _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t) {
      const int32_t* w = reinterpret_cast<const int32_t*>(v.values + (e * T + t) * 64);
      const uint8_t* pt = panel + t * 32;
#define EP_LANE(L)                                                                 \
  c##L = _mm256_dpbusd_epi32(c##L,                                                 \
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>( \
                                 pt + std::size_t{ix[L]} * (T * 32))),             \
                             _mm256_set1_epi32(w[L]))
      EP_LANE(0); EP_LANE(1); EP_LANE(2); EP_LANE(3); EP_LANE(4); EP_LANE(5); EP_LANE(6);
      EP_LANE(7); EP_LANE(8); EP_LANE(9); EP_LANE(10); EP_LANE(11); EP_LANE(12); EP_LANE(13);
      EP_LANE(14); EP_LANE(15);
#undef EP_LANE
    }
  }
  const __m256i c[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
  for (int l = 0; l < 16; ++l)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + l * ldm), c[l]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  if (ldm == 8) {  // one small panel (m_granule_small)
    for (std::size_t s = s_begin; s < s_end; ++s) {
      int32_t* o = acc + (s - s_begin) * kSparseSlice * ldm;
      switch (v.t) {
        case 1: panel8_pass_t<1>(v, s, at, o, ldm); break;
        case 2: panel8_pass_t<2>(v, s, at, o, ldm); break;
        default: panel8_pass_t<4>(v, s, at, o, ldm); break;
      }
    }
    return;
  }
  const std::size_t panel_bytes = std::size_t{v.kb} * v.t * 64;
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t p = 0; p < ldm / 16; ++p)
      panel_pass(v, s, at + p * panel_bytes, acc + (s - s_begin) * kSparseSlice * ldm + p * 16,
                 ldm);
}

}  // namespace

SparseKernels sparse_kernels_avx512vnni() {
  return SparseKernels{Isa::kAvx512Vnni, AFormat::kU8, 16, 8, run};
}

}  // namespace edgepack
