// AVX2 quantization kernels.
//
// Per tensor, 32 floats per step (4 ymm), the fewest uops we found that stay bit-exact:
//   v = x * inv; v = min(kBig, v)          (vminps returns its 2nd operand on NaN: NaN survives)
//   r = vcvtps2dq(v)                        (round half to even under the default MXCSR; NaN and
//                                            v <= -2^31 give INT32_MIN)
// (the min is skipped in a first pass, see quantize_t)
//   w = vpackssdw(r0, r1)                   (int16, saturating: exact for |rint(v)| <= 32000)
//   w = vpaddsw(w, zp)                      (saturating: anything clipped stays out of range)
//   q = vpacksswb / vpackuswb(w01, w23)     (saturating to the int8 / uint8 range)
// which equals clamp(rint(x * inv) + zp, qmin, qmax) for every non-NaN x, because |zp| <= 255
// and clipping at +-32000 only moves values that end up saturated anyway. A packed int16 of
// -32768 means "NaN or a huge negative": a running vpminsw notes it, and only then the input is
// rescanned exactly for NaN (rare: -inf or overflowing data). Tails go through the scalar
// reference, which computes the same thing.
#include <immintrin.h>

#include <cstdint>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr float kBig = 32000.0f;

bool has_nan(const float* x, std::size_t n) {
  std::size_t i = 0;
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_or_ps(acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  bool nan = _mm256_movemask_ps(acc) != 0;
  for (; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

// kClamp: clip at kBig first (needed only when some x * inv >= 2^31); kZp: add the zero point.
template <bool kSigned, bool kClamp, bool kZp>
inline __m256i quant32(const float* x, __m256 inv, __m256 big, __m256i zp, __m256i& lo_acc) {
  __m256i r[4];
  for (int j = 0; j < 4; ++j) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv);
    if (kClamp) v = _mm256_min_ps(big, v);
    r[j] = _mm256_cvtps_epi32(v);
  }
  __m256i ab = _mm256_packs_epi32(r[0], r[1]);
  __m256i cd = _mm256_packs_epi32(r[2], r[3]);
  lo_acc = _mm256_min_epi16(lo_acc, _mm256_min_epi16(ab, cd));
  if (kZp) {
    ab = _mm256_adds_epi16(ab, zp);
    cd = _mm256_adds_epi16(cd, zp);
  }
  const __m256i p = kSigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  // Packs work per 128-bit lane: dword groups come out as [0 1 2 3 | 4 5 6 7] of
  // (r0 lo, r1 lo, r2 lo, r3 lo | r0 hi, ...) -> one dword permutation restores the order.
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One pass over whole blocks of 32; returns whether some packed lane was -32768.
template <bool kSigned, bool kClamp, bool kZp>
bool quant_blocks(const float* x, uint8_t* q, std::size_t n, __m256 inv, __m256i vzp) {
  const __m256 big = _mm256_set1_ps(kBig);
  __m256i lo_acc = _mm256_set1_epi16(0);
  for (std::size_t i = 0; i < n; i += 32) {
    const auto ahead = reinterpret_cast<std::uintptr_t>(x + i) + 2048;  // may pass the end: ok
    _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        quant32<kSigned, kClamp, kZp>(x + i, inv, big, vzp, lo_acc));
  }
  return _mm256_movemask_epi8(_mm256_cmpeq_epi16(lo_acc, _mm256_set1_epi16(-32768))) != 0;
}

// Fast pass without the clamp: exact unless some lane converts to INT32_MIN (NaN, |v| >= 2^31),
// and each such lane packs to -32768. Only then is the range redone with the clamp, which
// leaves INT32_MIN to NaN and huge negatives, told apart by an exact rescan.
template <bool kSigned>
bool quantize_t(const float* x, void* qv, std::size_t n, float inv_scale, int32_t zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256i vzp = _mm256_set1_epi16(static_cast<int16_t>(zp));
  const std::size_t nb = n & ~std::size_t{31};
  bool nan = false;
  if (nb != 0) {
    const bool redo = zp == 0 ? quant_blocks<kSigned, false, false>(x, q, nb, inv, vzp)
                              : quant_blocks<kSigned, false, true>(x, q, nb, inv, vzp);
    if (redo) nan = quant_blocks<kSigned, true, true>(x, q, nb, inv, vzp) && has_nan(x, nb);
  }
  if (nb < n)
    nan |= kSigned ? ref::quantize_s8(x + nb, q + nb, n - nb, inv_scale, zp)
                   : ref::quantize_u8(x + nb, q + nb, n - nb, inv_scale, zp);
  return nan;
}

// Per-element parameters, clamped: exact for every input and reports NaN exactly.
template <bool kSigned>
bool quantize_vec_clamped(const float* x, void* qv, std::size_t n, const float* inv_scale,
                          const int32_t* zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const int32_t qmin = kSigned ? -128 : 0, qmax = kSigned ? 127 : 255;
  const __m256 vqmin = _mm256_set1_ps(static_cast<float>(qmin));
  const __m256 vqmax = _mm256_set1_ps(static_cast<float>(qmax));
  __m256 nan_acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + i));
    const __m256 zf = _mm256_cvtepi32_ps(z);  // exact: |zp| <= 255
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(inv_scale + i));
    nan_acc = _mm256_or_ps(nan_acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_sub_ps(vqmin, zf)), _mm256_sub_ps(vqmax, zf));
    const __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(v), z);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    const __m128i b = kSigned ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), b);
  }
  bool nan = _mm256_movemask_ps(nan_acc) != 0;
  for (; i < n; ++i)
    nan |= kSigned ? ref::quantize_s8(x + i, q + i, 1, inv_scale[i], zp[i])
                   : ref::quantize_u8(x + i, q + i, 1, inv_scale[i], zp[i]);
  return nan;
}

// Per-element parameters, fast pass over blocks of 32 with the per-tensor scheme (zero points
// packed to int16 in the same lane order); a packed -32768 sends the row to the clamped pass.
template <bool kSigned>
bool quantize_vec_t(const float* x, void* qv, std::size_t n, const float* inv_scale,
                    const int32_t* zp) {
  auto* q = static_cast<uint8_t*>(qv);
  __m256i lo_acc = _mm256_set1_epi16(0);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4], z[4];
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_cvtps_epi32(
          _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_loadu_ps(inv_scale + i + 8 * j)));
      z[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + i + 8 * j));
    }
    __m256i ab = _mm256_packs_epi32(r[0], r[1]);
    __m256i cd = _mm256_packs_epi32(r[2], r[3]);
    lo_acc = _mm256_min_epi16(lo_acc, _mm256_min_epi16(ab, cd));
    ab = _mm256_adds_epi16(ab, _mm256_packs_epi32(z[0], z[1]));
    cd = _mm256_adds_epi16(cd, _mm256_packs_epi32(z[2], z[3]));
    const __m256i p = kSigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  if (_mm256_movemask_epi8(_mm256_cmpeq_epi16(lo_acc, _mm256_set1_epi16(-32768))) != 0)
    return quantize_vec_clamped<kSigned>(x, q, n, inv_scale, zp);
  return i < n && quantize_vec_clamped<kSigned>(x + i, q + i, n - i, inv_scale + i, zp + i);
}

template <bool kSigned>
inline __m256 load8_as_float(const uint8_t* q, __m256i zp) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  const __m256i w = kSigned ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(w, zp));
}

template <bool kSigned>
void dequantize_t(const void* qv, float* x, std::size_t n, float scale, int32_t zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i z = _mm256_set1_epi32(zp);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // Fetch the output lines before the stores reach them (see quant_avx512.cc).
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(x + i) + 4096),
                 _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(x + i) + 4160),
                 _MM_HINT_T0);
    for (int j = 0; j < 4; ++j)
      _mm256_storeu_ps(x + i + 8 * j, _mm256_mul_ps(load8_as_float<kSigned>(q + i + 8 * j, z), s));
  }
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(load8_as_float<kSigned>(q + i, z), s));
  for (; i < n; ++i) {
    const int32_t v = kSigned ? int32_t{static_cast<const int8_t*>(qv)[i]} : int32_t{q[i]};
    x[i] = static_cast<float>(v - zp) * scale;
  }
}

template <bool kSigned>
void dequantize_vec_t(const void* qv, float* x, std::size_t n, const float* scale,
                      const int32_t* zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + i));
    _mm256_storeu_ps(x + i,
                     _mm256_mul_ps(load8_as_float<kSigned>(q + i, z), _mm256_loadu_ps(scale + i)));
  }
  for (; i < n; ++i) {
    const int32_t v = kSigned ? int32_t{static_cast<const int8_t*>(qv)[i]} : int32_t{q[i]};
    x[i] = static_cast<float>(v - zp[i]) * scale[i];
  }
}

bool minmax(const float* x, std::size_t n, float* mn, float* mx) {
  std::size_t i = 0;
  bool nan = false;
  float lo = x[0], hi = x[0];
  if (n >= 32) {
    __m256 l[4], h[4];
    __m256 nan_acc = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) l[j] = h[j] = _mm256_loadu_ps(x + 8 * j);
    for (; i + 32 <= n; i += 32)
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_loadu_ps(x + i + 8 * j);
        nan_acc = _mm256_or_ps(nan_acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        l[j] = _mm256_min_ps(l[j], v);
        h[j] = _mm256_max_ps(h[j], v);
      }
    nan = _mm256_movemask_ps(nan_acc) != 0;
    const __m256 l2 = _mm256_min_ps(_mm256_min_ps(l[0], l[1]), _mm256_min_ps(l[2], l[3]));
    const __m256 h2 = _mm256_max_ps(_mm256_max_ps(h[0], h[1]), _mm256_max_ps(h[2], h[3]));
    alignas(32) float lb[8], hb[8];
    _mm256_store_ps(lb, l2);
    _mm256_store_ps(hb, h2);
    lo = lb[0];
    hi = hb[0];
    for (int j = 1; j < 8; ++j) {
      lo = lb[j] < lo ? lb[j] : lo;
      hi = hb[j] > hi ? hb[j] : hi;
    }
  }
  if (i < n) {
    float l2, h2;
    nan |= ref::minmax(x + i, n - i, &l2, &h2);
    lo = l2 < lo ? l2 : lo;
    hi = h2 > hi ? h2 : hi;
  }
  *mn = lo;
  *mx = hi;
  return nan;
}

}  // namespace

QuantKernels quant_kernels_avx2() {
  return QuantKernels{Isa::kAvx2,
                      quantize_t<true>,
                      quantize_t<false>,
                      quantize_vec_t<true>,
                      quantize_vec_t<false>,
                      dequantize_t<true>,
                      dequantize_t<false>,
                      dequantize_vec_t<true>,
                      dequantize_vec_t<false>,
                      minmax};
}

}  // namespace edgepack
