// AVX-512 (F/BW/VL) quantization kernels, registered at the avx512vnni level (the x86 ladder has
// no plain AVX-512 rung; every VNNI CPU has F/BW/VL). Same scheme as quant_avx2.cc on zmm,
// 64 floats per step:
//   r = vcvtps2dq(min(kBig, x * inv))       NaN and v <= -2^31 -> INT32_MIN
//   w = vpackssdw(r0, r1), vpaddsw(w, zp)   int16, saturating (exact: |zp| <= 255)
//   q = vpacksswb / vpackuswb, vpermd       saturating to int8 / uint8, lanes back in order
// A packed -32768 flags "NaN or huge negative"; only then is the input rescanned for NaN.
// Half as many uops per element as AVX2, which is what counts while the data sits in L2.
// Tails use masked loads/stores, so there is no scalar loop at all.
// gcc 12's avx512fintrin.h builds its "undefined" registers by self-initialization, which
// -Wuninitialized then reports inside every intrinsic using one (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr float kBig = 32000.0f;

// Software prefetch `bytes` ahead of p. The output stream of dequantize (4x the input bytes)
// gains about 10% from fetching lines before the stores reach them (measured here; prefetchw was
// no better). Addresses are formed as integers: they may lie past the end of the array, which
// a prefetch tolerates but C++ pointer arithmetic does not.
inline void prefetch_ahead(const void* p, std::size_t bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + bytes),
               _MM_HINT_T0);
}

bool has_nan(const float* x, std::size_t n) {
  __mmask16 acc = 0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    acc |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    acc |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
  }
  return acc != 0;
}

inline __m512i quant_cvt(__m512 v, __m512 inv, __m512 big) {
  return _mm512_cvtps_epi32(_mm512_min_ps(big, _mm512_mul_ps(v, inv)));
}

// kZp: add the zero point (skipped for zp == 0, the symmetric int8 case).
template <bool kSigned, bool kZp>
inline __m512i pack64(__m512i r0, __m512i r1, __m512i r2, __m512i r3, __m512i zp, __m512i& lo_acc) {
  __m512i ab = _mm512_packs_epi32(r0, r1);
  __m512i cd = _mm512_packs_epi32(r2, r3);
  lo_acc = _mm512_min_epi16(lo_acc, _mm512_min_epi16(ab, cd));
  if (kZp) {
    ab = _mm512_adds_epi16(ab, zp);
    cd = _mm512_adds_epi16(cd, zp);
  }
  const __m512i p = kSigned ? _mm512_packs_epi16(ab, cd) : _mm512_packus_epi16(ab, cd);
  // Per 128-bit lane l the dwords are (r0[l], r1[l], r2[l], r3[l]); gather them back.
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(idx, p);
}

// Fast pass over whole blocks of 64, without the float clamp: exact unless some lane converts
// to INT32_MIN (NaN, v <= -2^31, or v >= 2^31 which would come out wrong). Every such lane packs
// to -32768, so the return value "some lane was -32768" tells the caller to redo the range with
// the clamped kernel. Typical data never gets there (|x| < 32768 * scale).
template <bool kSigned, bool kZp>
bool quantize_fast(const float* x, uint8_t* q, std::size_t n, __m512 inv, __m512i vzp) {
  __m512i lo_acc = _mm512_set1_epi16(0);
  for (std::size_t i = 0; i < n; i += 64) {
    for (int j = 0; j < 4; ++j) prefetch_ahead(x + i + 16 * j, 2048);
    const __m512i r0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    const __m512i r1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), inv));
    const __m512i r2 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i + 32), inv));
    const __m512i r3 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i + 48), inv));
    _mm512_storeu_si512(q + i, pack64<kSigned, kZp>(r0, r1, r2, r3, vzp, lo_acc));
  }
  return _mm512_cmpeq_epi16_mask(lo_acc, _mm512_set1_epi16(-32768)) != 0;
}

template <bool kSigned>
bool quantize_body(const float* x, void* qv, std::size_t n, float inv_scale, int32_t zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const __m512 inv = _mm512_set1_ps(inv_scale);
  const __m512 big = _mm512_set1_ps(kBig);
  const __m512i vzp = _mm512_set1_epi16(static_cast<int16_t>(zp));
  const std::size_t nb = n & ~std::size_t{63};
  bool redo = false;
  if (nb != 0)
    redo = zp == 0 ? quantize_fast<kSigned, false>(x, q, nb, inv, vzp)
                   : quantize_fast<kSigned, true>(x, q, nb, inv, vzp);
  // Clamped pass: the whole range if the fast pass saw a suspicious lane, else the tail only.
  __m512i lo_acc = _mm512_set1_epi16(0);
  std::size_t i = redo ? 0 : nb;
  for (; i + 64 <= n; i += 64) {
    const __m512i r0 = quant_cvt(_mm512_loadu_ps(x + i), inv, big);
    const __m512i r1 = quant_cvt(_mm512_loadu_ps(x + i + 16), inv, big);
    const __m512i r2 = quant_cvt(_mm512_loadu_ps(x + i + 32), inv, big);
    const __m512i r3 = quant_cvt(_mm512_loadu_ps(x + i + 48), inv, big);
    _mm512_storeu_si512(q + i, pack64<kSigned, true>(r0, r1, r2, r3, vzp, lo_acc));
  }
  // Tail (< 64): 16 at a time with masks; lanes past n are zero and quantize harmlessly.
  for (; i < n; i += 16) {
    const std::size_t m = n - i < 16 ? n - i : 16;
    const __mmask16 k = static_cast<__mmask16>((1u << m) - 1);
    const __m512i r = quant_cvt(_mm512_maskz_loadu_ps(k, x + i), inv, big);
    const __m512i z = _mm512_set1_epi32(zp);
    // int32 domain: clamp to +-32000 first so adding zp cannot overflow, NaN stays INT32_MIN.
    const __m512i c = _mm512_max_epi32(r, _mm512_set1_epi32(-32000));
    const __m512i nanl =
        _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(r, _mm512_set1_epi32(INT32_MIN)),
                                _mm512_set1_epi32(0), _mm512_set1_epi32(-32768));
    lo_acc = _mm512_min_epi16(lo_acc, nanl);
    const __m512i s = _mm512_add_epi32(c, z);
    if (kSigned) {
      _mm_mask_storeu_epi8(q + i, k, _mm512_cvtsepi32_epi8(s));
    } else {
      _mm_mask_storeu_epi8(q + i, k,
                           _mm512_cvtusepi32_epi8(_mm512_max_epi32(s, _mm512_setzero_si512())));
    }
  }
  const __mmask32 sat = _mm512_cmpeq_epi16_mask(lo_acc, _mm512_set1_epi16(-32768));
  return sat != 0 && has_nan(x, n);
}

// Elements before the next 64-byte boundary of p (0 if p is not float-aligned): zmm loads and
// stores that straddle two cache lines cost two accesses, which halves L2 throughput.
inline std::size_t head_to_align(const void* p, std::size_t n) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (a % sizeof(float) != 0) return 0;
  const std::size_t h = ((64 - (a & 63)) & 63) / sizeof(float);
  return h < n ? h : 0;
}

// Align the float stream (4x the bytes of the int8 one).
template <bool kSigned>
bool quantize_t(const float* x, void* qv, std::size_t n, float inv_scale, int32_t zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const std::size_t h = head_to_align(x, n);
  bool nan = h != 0 && quantize_body<kSigned>(x, q, h, inv_scale, zp);
  nan |= quantize_body<kSigned>(x + h, q + h, n - h, inv_scale, zp);
  return nan;
}

// Per-element parameters (the channel axis is the last one): the clamp is done in float on
// both sides so that only NaN reaches INT32_MIN, then int32 add and a saturating narrow.
template <bool kSigned>
inline __m512i quant_vec16(__m512 x, __m512 inv, __m512i zp, __mmask16& nan) {
  const __m512 big = _mm512_set1_ps(kBig), nbig = _mm512_set1_ps(-kBig);
  const __m512 v = _mm512_mul_ps(x, inv);
  const __m512i r = _mm512_cvtps_epi32(_mm512_min_ps(big, _mm512_max_ps(nbig, v)));
  nan |= _mm512_cmpeq_epi32_mask(r, _mm512_set1_epi32(INT32_MIN));
  const __m512i s = _mm512_add_epi32(r, zp);
  return kSigned ? s : _mm512_max_epi32(s, _mm512_setzero_si512());
}

// Clamped per-element pass over [0, n): exact for every input, reports NaN exactly.
template <bool kSigned>
bool quantize_vec_clamped(const float* x, uint8_t* q, std::size_t n, const float* inv_scale,
                          const int32_t* zp) {
  __mmask16 nan = 0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i s = quant_vec16<kSigned>(_mm512_loadu_ps(x + i), _mm512_loadu_ps(inv_scale + i),
                                           _mm512_loadu_si512(zp + i), nan);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i),
                     kSigned ? _mm512_cvtsepi32_epi8(s) : _mm512_cvtusepi32_epi8(s));
  }
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    __mmask16 tail_nan = 0;
    const __m512i s = quant_vec16<kSigned>(_mm512_maskz_loadu_ps(k, x + i),
                                           _mm512_maskz_loadu_ps(k, inv_scale + i),
                                           _mm512_maskz_loadu_epi32(k, zp + i), tail_nan);
    nan |= tail_nan & k;
    _mm_mask_storeu_epi8(q + i, k, kSigned ? _mm512_cvtsepi32_epi8(s) : _mm512_cvtusepi32_epi8(s));
  }
  return nan != 0;
}

// Per-element parameters, fast pass: the per-tensor scheme (unclamped vcvtps2dq, saturating
// int16 packs, vpaddsw of the zero points packed the same way) over blocks of 64. A packed
// -32768 (NaN or |v| >= 2^31 somewhere) sends the whole row through the clamped pass instead.
template <bool kSigned>
bool quantize_vec_t(const float* x, void* qv, std::size_t n, const float* inv_scale,
                    const int32_t* zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512i lo_acc = _mm512_set1_epi16(0);
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i r[4], z[4];
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm512_cvtps_epi32(
          _mm512_mul_ps(_mm512_loadu_ps(x + i + 16 * j), _mm512_loadu_ps(inv_scale + i + 16 * j)));
      z[j] = _mm512_loadu_si512(zp + i + 16 * j);
    }
    __m512i ab = _mm512_packs_epi32(r[0], r[1]);
    __m512i cd = _mm512_packs_epi32(r[2], r[3]);
    lo_acc = _mm512_min_epi16(lo_acc, _mm512_min_epi16(ab, cd));
    ab = _mm512_adds_epi16(ab, _mm512_packs_epi32(z[0], z[1]));  // same lane order as r
    cd = _mm512_adds_epi16(cd, _mm512_packs_epi32(z[2], z[3]));
    const __m512i p = kSigned ? _mm512_packs_epi16(ab, cd) : _mm512_packus_epi16(ab, cd);
    _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(idx, p));
  }
  if (_mm512_cmpeq_epi16_mask(lo_acc, _mm512_set1_epi16(-32768)) != 0)
    return quantize_vec_clamped<kSigned>(x, q, n, inv_scale, zp);
  return i < n && quantize_vec_clamped<kSigned>(x + i, q + i, n - i, inv_scale + i, zp + i);
}

template <bool kSigned>
inline __m512 load16_as_float(const uint8_t* q, __mmask16 k, __m512i zp) {
  const __m128i b = _mm_maskz_loadu_epi8(k, q);
  const __m512i w = kSigned ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(w, zp));
}

template <bool kSigned>
void dequantize_body(const void* qv, float* x, std::size_t n, float scale, int32_t zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  const __m512 s = _mm512_set1_ps(scale);
  const __m512i z = _mm512_set1_epi32(zp);
  std::size_t i = 0;
  // No streaming stores: measured here, they double the speed into a reused 64 MiB `out=` but
  // halve it into a freshly allocated output (each page faults in, zeroed, just before the
  // store), which is what a plain dequantize() writes to.
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 4; ++j) {
      prefetch_ahead(x + i + 16 * j, 4096);
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i + 16 * j));
      const __m512i w = kSigned ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(w, z));
      _mm512_storeu_ps(x + i + 16 * j, _mm512_mul_ps(f, s));
    }
  for (; i < n; i += 16) {
    const std::size_t m = n - i < 16 ? n - i : 16;
    const __mmask16 k = static_cast<__mmask16>(m == 16 ? 0xffff : (1u << m) - 1);
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(load16_as_float<kSigned>(q + i, k, z), s));
  }
}

template <bool kSigned>
void dequantize_t(const void* qv, float* x, std::size_t n, float scale, int32_t zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  const std::size_t h = head_to_align(x, n);
  if (h != 0) dequantize_body<kSigned>(q, x, h, scale, zp);
  dequantize_body<kSigned>(q + h, x + h, n - h, scale, zp);
}

template <bool kSigned>
void dequantize_vec_t(const void* qv, float* x, std::size_t n, const float* scale,
                      const int32_t* zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  for (std::size_t i = 0; i < n; i += 16) {
    const std::size_t m = n - i < 16 ? n - i : 16;
    const __mmask16 k = static_cast<__mmask16>(m == 16 ? 0xffff : (1u << m) - 1);
    const __m512 f = load16_as_float<kSigned>(q + i, k, _mm512_maskz_loadu_epi32(k, zp + i));
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(f, _mm512_maskz_loadu_ps(k, scale + i)));
  }
}

// min/max: vminps/vmaxps never see NaN in the result we keep (NaN is checked separately), so
// the order of the reduction does not matter and the result equals the scalar reference.
bool minmax(const float* x, std::size_t n, float* mn, float* mx) {
  __m512 l[4], h[4];
  __mmask16 nan = 0;
  const __m512 first = _mm512_set1_ps(x[0]);
  for (int j = 0; j < 4; ++j) l[j] = h[j] = first;
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 4; ++j) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * j);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      l[j] = _mm512_min_ps(l[j], v);
      h[j] = _mm512_max_ps(h[j], v);
    }
  for (; i < n; i += 16) {
    const std::size_t m = n - i < 16 ? n - i : 16;
    const __mmask16 k = static_cast<__mmask16>(m == 16 ? 0xffff : (1u << m) - 1);
    const __m512 v = _mm512_mask_loadu_ps(first, k, x + i);  // masked-off lanes repeat x[0]
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    l[0] = _mm512_min_ps(l[0], v);
    h[0] = _mm512_max_ps(h[0], v);
  }
  *mn = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(l[0], l[1]), _mm512_min_ps(l[2], l[3])));
  *mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(h[0], h[1]), _mm512_max_ps(h[2], h[3])));
  return nan != 0;
}

}  // namespace

QuantKernels quant_kernels_avx512() {
  return QuantKernels{Isa::kAvx512Vnni,        quantize_t<true>,
                      quantize_t<false>,       quantize_vec_t<true>,
                      quantize_vec_t<false>,   dequantize_t<true>,
                      dequantize_t<false>,     dequantize_vec_t<true>,
                      dequantize_vec_t<false>, minmax};
}

}  // namespace edgepack
