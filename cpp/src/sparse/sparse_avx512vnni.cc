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
// Calls of two panels (m_tile = 32 rows) use panel2_pass: one index load and one broadcast
// feed two vpdpbusd. Measured here (micro-benchmarks): vpdpbusd zmm alone runs ~3.9/ns, with
// the 2 loads per vpdpbusd of panel2_pass ~2.5/ns, with panel_pass's 3 ~2.0/ns: loads, not
// vpdpbusd, bound these kernels. Four panels per pass (1.5 loads) measured no faster in the
// micro-benchmark and slower in the kernel (64 KiB of panels at K = 1024 leave L1).
//
// Around the kernel (SparseKernels::pack_panel / out_f32): the tile's panels are packed with
// 16 x 16 dword transposes, and the lane-major sums are un-permuted with the same transpose
// and go through the f32 epilogue in registers, 16 output columns at a time.
#include <immintrin.h>

// gcc 12's AVX-512 intrinsic headers (_mm512_undefined_* inside the unpack/insert wrappers) trip
// -Wmaybe-uninitialized, a known false positive; silence it for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

// The 16 lanes of a step, one named accumulator each (an indexed array makes gcc keep them on
// the stack), written out by the preprocessor.
// clang-format off
#define EP_FOR_16_LANES(X) \
  X(0); X(1); X(2); X(3); X(4); X(5); X(6); X(7); X(8); X(9); X(10); X(11); X(12); X(13); \
  X(14); X(15)
// clang-format on

constexpr std::size_t kPrefetchSteps = 16;  // ~1 KiB of values ahead (prefetch never faults)
// Panel bytes one chunk of passes should read (see run). Measured at K = 1024 and 4096, M = 128:
// 32 KiB gains 5% at K = 4096; 16 KiB and below lose more to the extra accumulator round trips.
constexpr std::size_t kChunkBytes = 32768;

void gemv(const SparseView& v, const uint8_t* a, std::size_t s_begin, std::size_t s_end,
          int32_t* acc) {
  const int tshift = v.t == 1 ? 0 : (v.t == 2 ? 1 : 2);
  for (std::size_t s = s_begin; s < s_end; ++s) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    const std::size_t e0 = v.slice_ptr[s], e1 = v.slice_ptr[s + 1];
    for (std::size_t e = e0; e < e1; ++e) {
      // Every step, unlike the panel passes (see panel8_pass_t): here every other step
      // measured ~5% slower.
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
void panel_pass_t(const SparseView& v, std::size_t e_begin, std::size_t e_end, bool accumulate,
                  const uint8_t* panel, int32_t* out, std::size_t ldm) {
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
          c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
  if (accumulate) {
#define EP_LOAD(L) c##L = _mm512_loadu_si512(out + L * ldm)
    EP_FOR_16_LANES(EP_LOAD);
#undef EP_LOAD
  }
  for (std::size_t e = e_begin; e < e_end; ++e) {
    const uint16_t* ix = v.idx + e * kSparseSlice;
    // The slice's blocks stream from L3/DRAM while the panel lines come from L1/L2: prefetch
    // the stream ahead, or each step waits a full miss latency (measured: 3x slower at 50%).
    if (e & 1)  // one prefetch per line: 32 index bytes a step (see panel8_pass_t)
      _mm_prefetch(reinterpret_cast<const char*>(ix + kPrefetchSteps * kSparseSlice), _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t)
      _mm_prefetch(reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * T + t) * 64),
                   _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t) {
      const int32_t* w = reinterpret_cast<const int32_t*>(v.values + (e * T + t) * 64);
      const uint8_t* pt = panel + t * 64;
#define EP_LANE(L)                                                                         \
  c##L = _mm512_dpbusd_epi32(c##L, _mm512_loadu_si512(pt + std::size_t{ix[L]} * (T * 64)), \
                             _mm512_set1_epi32(w[L]))
      EP_FOR_16_LANES(EP_LANE);
#undef EP_LANE
    }
  }
  const __m512i c[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
  for (int l = 0; l < 16; ++l) _mm512_storeu_si512(out + l * ldm, c[l]);
}

// Two panels (32 tile rows) against one slice, in two passes of 8 lanes: per step, lane and
// 4-k group, one index load and one weight broadcast feed two vpdpbusd (one per panel), so the
// loads per vpdpbusd drop from 3 to 2 (the load ports, not vpdpbusd, bound panel_pass_t). 16
// accumulators as before; the second pass re-reads the slice's idx/values from L1.
template <std::size_t T>
void panel2_pass_t(const SparseView& v, std::size_t s, std::size_t e_begin, std::size_t e_end,
                   bool accumulate, const uint8_t* p0, const uint8_t* p1, int32_t* out,
                   std::size_t ldm) {
  for (std::size_t h = 0; h < kSparseSlice; h += 8) {
    // Steps past the longest of these 8 lanes hold only padding blocks (zero weights; checked by
    // the loader): rows are sorted by length, so the second half of a slice is often shorter.
    const uint16_t* nb = v.row_nblk + s * kSparseSlice + h;
    const std::size_t longest = *std::max_element(nb, nb + 8);
    const std::size_t e_stop = std::min<std::size_t>(e_end, v.slice_ptr[s] + longest);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
    if (accumulate) {
#define EP_LOAD(L)                                \
  a##L = _mm512_loadu_si512(out + (h + L) * ldm); \
  b##L = _mm512_loadu_si512(out + (h + L) * ldm + 16)
      // clang-format off
      EP_LOAD(0); EP_LOAD(1); EP_LOAD(2); EP_LOAD(3); EP_LOAD(4); EP_LOAD(5); EP_LOAD(6);
      EP_LOAD(7);
      // clang-format on
#undef EP_LOAD
    }
    for (std::size_t e = e_begin; e < e_stop; ++e) {
      const uint16_t* ix = v.idx + e * kSparseSlice + h;
      if (h == 0) {
        if (e & 1)  // one prefetch per line: 32 index bytes a step (see panel8_pass_t)
          _mm_prefetch(reinterpret_cast<const char*>(ix + kPrefetchSteps * kSparseSlice),
                       _MM_HINT_T0);
        for (std::size_t t = 0; t < T; ++t)
          _mm_prefetch(
              reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * T + t) * 64),
              _MM_HINT_T0);
      }
      for (std::size_t t = 0; t < T; ++t) {
        const int32_t* w = reinterpret_cast<const int32_t*>(v.values + (e * T + t) * 64) + h;
        const uint8_t* q0 = p0 + t * 64;
        const uint8_t* q1 = p1 + t * 64;
#define EP_LANE(L)                                                      \
  {                                                                     \
    const std::size_t off = std::size_t{ix[L]} * (T * 64);              \
    const __m512i wb = _mm512_set1_epi32(w[L]);                         \
    a##L = _mm512_dpbusd_epi32(a##L, _mm512_loadu_si512(q0 + off), wb); \
    b##L = _mm512_dpbusd_epi32(b##L, _mm512_loadu_si512(q1 + off), wb); \
  }
        EP_LANE(0) EP_LANE(1) EP_LANE(2) EP_LANE(3) EP_LANE(4) EP_LANE(5) EP_LANE(6) EP_LANE(7)
#undef EP_LANE
      }
    }
    const __m512i a[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    const __m512i b[8] = {b0, b1, b2, b3, b4, b5, b6, b7};
    for (std::size_t l = 0; l < 8; ++l) {
      _mm512_storeu_si512(out + (h + l) * ldm, a[l]);
      _mm512_storeu_si512(out + (h + l) * ldm + 16, b[l]);
    }
  }
}

void panel_pass(const SparseView& v, std::size_t e_begin, std::size_t e_end, bool accumulate,
                const uint8_t* panel, int32_t* out, std::size_t ldm) {
  switch (v.t) {  // the block size as a constant: shifts instead of multiplies, fewer spills
    case 1:
      return panel_pass_t<1>(v, e_begin, e_end, accumulate, panel, out, ldm);
    case 2:
      return panel_pass_t<2>(v, e_begin, e_end, accumulate, panel, out, ldm);
    default:
      return panel_pass_t<4>(v, e_begin, e_end, accumulate, panel, out, ldm);
  }
}

void panel2_pass(const SparseView& v, std::size_t s, std::size_t e_begin, std::size_t e_end,
                 bool accumulate, const uint8_t* p0, const uint8_t* p1, int32_t* out,
                 std::size_t ldm) {
  switch (v.t) {
    case 1:
      return panel2_pass_t<1>(v, s, e_begin, e_end, accumulate, p0, p1, out, ldm);
    case 2:
      return panel2_pass_t<2>(v, s, e_begin, e_end, accumulate, p0, p1, out, ldm);
    default:
      return panel2_pass_t<4>(v, s, e_begin, e_end, accumulate, p0, p1, out, ldm);
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
    // One prefetch per cache line of each stream: a step reads 64 value bytes per t but only
    // 32 index bytes, so the index stream is prefetched every other step. Prefetching it every
    // step measured ~15% slower here (M <= 8 is where a step has the least work per prefetch).
    if (e & 1)
      _mm_prefetch(reinterpret_cast<const char*>(ix + kPrefetchSteps * kSparseSlice), _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t)
      _mm_prefetch(reinterpret_cast<const char*>(v.values + ((e + kPrefetchSteps) * T + t) * 64),
                   _MM_HINT_T0);
    for (std::size_t t = 0; t < T; ++t) {
      const int32_t* w = reinterpret_cast<const int32_t*>(v.values + (e * T + t) * 64);
      const uint8_t* pt = panel + t * 32;
#define EP_LANE(L)                                                                              \
  c##L = _mm256_dpbusd_epi32(                                                                   \
      c##L,                                                                                     \
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pt + std::size_t{ix[L]} * (T * 32))), \
      _mm256_set1_epi32(w[L]))
      EP_FOR_16_LANES(EP_LANE);
#undef EP_LANE
    }
  }
  const __m256i c[16] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15};
  for (int l = 0; l < 16; ++l) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + l * ldm), c[l]);
}

void run(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
         std::size_t s_end, int32_t* acc) {
  if (ldm == 1) return gemv(v, at, s_begin, s_end, acc);
  if (ldm == 8) {  // one small panel (m_granule_small)
    for (std::size_t s = s_begin; s < s_end; ++s) {
      int32_t* o = acc + (s - s_begin) * kSparseSlice * ldm;
      switch (v.t) {
        case 1:
          panel8_pass_t<1>(v, s, at, o, ldm);
          break;
        case 2:
          panel8_pass_t<2>(v, s, at, o, ldm);
          break;
        default:
          panel8_pass_t<4>(v, s, at, o, ldm);
          break;
      }
    }
    return;
  }
  // Passes over a slice run its steps in order, and a lane's blocks ascend in k, so a pass's
  // panel reads sweep k from 0 to K. When the panels a pass reads do not fit in L1 (K = 4096:
  // 64 KiB per panel), every slice re-misses them. So the steps of every slice are cut into
  // nchunk equal ranges, and chunk c of all slices of this call runs before chunk c + 1 (the
  // accumulators go through acc in between): at any time the passes read about 1/nchunk of
  // the panels, which stays in L1. Sums are the same integers in another order: exact.
  const std::size_t panel_bytes = std::size_t{v.kb} * v.t * 64;
  const std::size_t np = ldm / 16;
  const std::size_t hot = panel_bytes * (np >= 2 ? 2 : 1);
  const std::size_t nchunk = std::max<std::size_t>(1, (hot + kChunkBytes - 1) / kChunkBytes);
  for (std::size_t c = 0; c < nchunk; ++c)
    for (std::size_t s = s_begin; s < s_end; ++s) {
      const std::size_t e0 = v.slice_ptr[s], len = v.slice_ptr[s + 1] - e0;
      const std::size_t ea = e0 + len * c / nchunk, eb = e0 + len * (c + 1) / nchunk;
      int32_t* o = acc + (s - s_begin) * kSparseSlice * ldm;
      std::size_t p = 0;
      for (; p + 2 <= np; p += 2) {
        const uint8_t* p0 = at + p * panel_bytes;
        panel2_pass(v, s, ea, eb, c > 0, p0, p0 + panel_bytes, o + p * 16, ldm);
      }
      if (p < np) panel_pass(v, ea, eb, c > 0, at + p * panel_bytes, o + p * 16, ldm);
    }
}

// In-register transpose of a 16 x 16 int32 block: r[i] element j -> r[j] element i. 32-bit and
// 64-bit interleaves inside 128-bit blocks, then a 4 x 4 transpose of the 128-bit blocks.
inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4g + j], block b: elements 4b + j of rows 4g..4g+3
  __m512i u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
    const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + j] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

// Rows r0..r0+15 of the 16 lane rows lanes[0..15] (stride ldm >= 16), transposed: r[i] holds
// row r0 + i of the 16 columns.
inline void gather_rows16(const int32_t* acc, std::size_t ldm, const uint32_t* lanes,
                          std::size_t r0, __m512i r[16]) {
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(acc + lanes[i] * ldm + r0);
  transpose16x16(r);
}

// The same for ldm == 8 (8 rows): zmm i holds lane rows i (low half) and i + 8 (high half); an
// 8 x 8 transpose in each half leaves row r's columns 0..7 low and 8..15 high.
inline void gather_rows8(const int32_t* acc, const uint32_t* lanes, __m512i r[8]) {
  __m512i z[8], t[8], u[8];
  for (int i = 0; i < 8; ++i)
    z[i] = _mm512_inserti64x4(
        _mm512_castsi256_si512(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + lanes[i] * 8))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + lanes[i + 8] * 8)), 1);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
  }
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // u[4g + j], 128-bit block b: row 4(b & 1) + j of lanes 4g..4g+3 (+8 for b >= 2)
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm512_permutex2var_epi64(u[j], lo, u[4 + j]);
    r[j + 4] = _mm512_permutex2var_epi64(u[j], hi, u[4 + j]);
  }
}

// One output row of 16 columns through the f32 epilogue, in registers (the same operations, in
// the same order, as the dense AVX-512 tile epilogue and dequant_epilogue: int32 wrap-around
// zero-point correction, float(acc) * (row_scale * w_scale) with two roundings and no FMA,
// + bias, a ReLU that keeps NaN). Bias and ReLU are template arguments: a per-row test of them
// measured ~10% of the epilogue.
template <bool kBias, bool kRelu>
inline void out_row(__m512i raw, int32_t zpoff, float rscale, __m512i cs, __m512 ws, __m512 bias,
                    __mmask16 cm, float* yr) {
  const __m512i a = _mm512_sub_epi32(raw, _mm512_mullo_epi32(_mm512_set1_epi32(zpoff), cs));
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(_mm512_set1_ps(rscale), ws));
  if (kBias) v = _mm512_add_ps(v, bias);
  if (kRelu) {  // v <= 0 (ordered: false for NaN) -> +0.0, as np.maximum(v, 0)
    const __mmask16 le = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ);
    v = _mm512_mask_mov_ps(v, le, _mm512_setzero_ps());
  }
  _mm512_mask_storeu_ps(yr, cm, v);
}

// SparseOutF32Fn: un-permute 16 columns in registers (16 x 16 transposes of the lane rows) and
// apply the f32 epilogue there, so the raw sums never go through memory row-major. A block of
// 16 whole rows is written out with constant register indices (a loop over r[i] with a runtime
// bound makes gcc spill the 16 transposed registers and reload each row: measured ~2x slower).
template <bool kBias, bool kRelu>
void out_f32_t(const int32_t* acc, std::size_t ldm, const uint32_t* lanes, std::size_t mt,
               std::size_t nc, const SparseOutArgs& e, float* y, std::size_t ldy) {
  const __mmask16 cm = static_cast<__mmask16>(nc >= 16 ? 0xFFFFu : ((1u << nc) - 1u));
  const __m512i cs = _mm512_maskz_loadu_epi32(cm, e.colsum);
  const __m512 ws = _mm512_maskz_loadu_ps(cm, e.w_scale);
  const __m512 bias = kBias ? _mm512_maskz_loadu_ps(cm, e.bias) : _mm512_setzero_ps();
  const int32_t* zp = e.row_zpoff;
  const float* rs = e.row_scale;
  if (ldm == 8) {
    __m512i r[8];
    gather_rows8(acc, lanes, r);
    for (std::size_t i = 0; i < mt; ++i)
      out_row<kBias, kRelu>(r[i], zp[i], rs[i], cs, ws, bias, cm, y + i * ldy);
    return;
  }
  std::size_t r0 = 0;
  for (; r0 + 16 <= mt; r0 += 16) {
    __m512i r[16];
    gather_rows16(acc, ldm, lanes, r0, r);
    float* yb = y + r0 * ldy;
#define EP_ROW(I) \
  out_row<kBias, kRelu>(r[I], zp[r0 + I], rs[r0 + I], cs, ws, bias, cm, yb + I * ldy)
    EP_FOR_16_LANES(EP_ROW);
#undef EP_ROW
  }
  if (r0 < mt) {
    __m512i r[16];
    gather_rows16(acc, ldm, lanes, r0, r);
    for (std::size_t i = 0; r0 + i < mt; ++i)
      out_row<kBias, kRelu>(r[i], zp[r0 + i], rs[r0 + i], cs, ws, bias, cm, y + (r0 + i) * ldy);
  }
}

void out_f32(const int32_t* acc, std::size_t ldm, const uint32_t* lanes, std::size_t mt,
             std::size_t nc, const SparseOutArgs& e, float* y, std::size_t ldy) {
  if (e.bias)
    return e.relu ? out_f32_t<true, true>(acc, ldm, lanes, mt, nc, e, y, ldy)
                  : out_f32_t<true, false>(acc, ldm, lanes, mt, nc, e, y, ldy);
  return e.relu ? out_f32_t<false, true>(acc, ldm, lanes, mt, nc, e, y, ldy)
                : out_f32_t<false, false>(acc, ldm, lanes, mt, nc, e, y, ldy);
}

// SparsePackPanelFn for R = 16: 16 rows x 64 bytes (16 groups of 4 k) per step, loaded with a
// byte mask past k, transposed as a 16 x 16 dword block: each result register is one group's
// 64-byte run of the panel. Other panel heights take the portable loop.
void pack_panel(const uint8_t* a, std::size_t lda, std::size_t k, std::size_t rows, std::size_t R,
                std::size_t q4, uint32_t flip, uint8_t* dst) {
  if (R != 16) return sparse_pack_panel_scalar(a, lda, k, rows, R, q4, flip, dst);
  const __m512i fl = _mm512_set1_epi32(static_cast<int>(flip));
  for (std::size_t q0 = 0; q0 < q4; q0 += 16) {
    const std::size_t byte0 = q0 * 4;
    const std::size_t avail = k > byte0 ? k - byte0 : 0;
    const __mmask64 km = avail >= 64 ? ~__mmask64{0} : ((__mmask64{1} << avail) - 1);
    __m512i r[16];
    for (std::size_t i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_xor_si512(_mm512_maskz_loadu_epi8(km, a + i * lda + byte0), fl)
                      : _mm512_setzero_si512();
    transpose16x16(r);
    const std::size_t nq = q4 - q0 < 16 ? q4 - q0 : 16;
    for (std::size_t j = 0; j < nq; ++j) _mm512_storeu_si512(dst + (q0 + j) * 64, r[j]);
  }
}

}  // namespace

SparseKernels sparse_kernels_avx512vnni() {
  return SparseKernels{Isa::kAvx512Vnni, AFormat::kU8, 16, 8, 32, run, pack_panel, out_f32};
}

}  // namespace edgepack
