// AVX2 quantization kernels. Scheme: 32 floats per step (4 ymm): vmulps by the reciprocal,
// clamp with vmaxps/vminps to [qmin-zp, qmax-zp] (NaN detected separately with vcmpunordps),
// vcvtps2dq (round half to even under the default MXCSR), add zp, then vpackssdw + vpacksswb
// (or vpackusdw + vpackuswb) and a vpermq to undo the lane interleave. Tails go through the
// scalar reference, which computes the same thing.
#include <immintrin.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

template <bool kSigned>
inline __m256i quant32(const float* x, __m256 inv, __m256 lo, __m256 hi, __m256i zp,
                       __m256& nan_acc) {
  __m256i r[4];
  for (int j = 0; j < 4; ++j) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv);
    nan_acc = _mm256_or_ps(nan_acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    r[j] = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
  }
  __m256i ab, cd, p;
  if (kSigned) {
    ab = _mm256_packs_epi32(r[0], r[1]);
    cd = _mm256_packs_epi32(r[2], r[3]);
    p = _mm256_packs_epi16(ab, cd);
  } else {
    ab = _mm256_packus_epi32(r[0], r[1]);
    cd = _mm256_packus_epi32(r[2], r[3]);
    p = _mm256_packus_epi16(ab, cd);
  }
  // Packs work per 128-bit lane: order is [0 1 2 3 | 4 5 6 7] in dword groups -> fix with a
  // dword permutation.
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

template <bool kSigned>
bool quantize_t(const float* x, void* qv, std::size_t n, float inv_scale, int32_t zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const int32_t qmin = kSigned ? -128 : 0, qmax = kSigned ? 127 : 255;
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(qmax - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  __m256 nan_acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        quant32<kSigned>(x + i, inv, lo, hi, vzp, nan_acc));
  bool nan = _mm256_movemask_ps(nan_acc) != 0;
  if (i < n)
    nan |= kSigned ? ref::quantize_s8(x + i, q + i, n - i, inv_scale, zp)
                   : ref::quantize_u8(x + i, q + i, n - i, inv_scale, zp);
  return nan;
}

template <bool kSigned>
bool quantize_vec_t(const float* x, void* qv, std::size_t n, const float* inv_scale,
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
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 4; ++j)
      _mm256_storeu_ps(x + i + 8 * j, _mm256_mul_ps(load8_as_float<kSigned>(q + i + 8 * j, z), s));
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(load8_as_float<kSigned>(q + i, z), s));
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
    _mm256_storeu_ps(x + i, _mm256_mul_ps(load8_as_float<kSigned>(q + i, z), _mm256_loadu_ps(scale + i)));
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
