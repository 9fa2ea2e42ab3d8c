// AVX-512 epilogues (see gemm_epilogue.h): one zmm is one 16-column tile row, so each row is a
// handful of instructions: vpmulld/vpsubd for the zero-point correction, vcvtdq2ps, vmulps by
// (row scale * column scale) computed exactly as the reference does (two separate roundings, no
// FMA), vaddps bias, a compare-and-blend ReLU that keeps NaN like np.maximum, and for q8 a clamp
// with vmaxps/vminps, vcvtps2dq (round half to even under the default MXCSR, as rint), vpaddd zp
// and vpmovdb. Partial panels use masked stores.
// gcc 12 reports its own _mm512_undefined_* placeholders inside the intrinsics as
// maybe-uninitialized (a known false positive); silence it for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "gemm/gemm_epilogue.h"
#include "kernels_internal.h"

namespace edgepack {
namespace {

inline __mmask16 col_mask(std::size_t nc) {
  return static_cast<__mmask16>(nc >= 16 ? 0xFFFFu : ((1u << nc) - 1u));
}

inline __m512i corrected(const int32_t* t, __m512i cs, int32_t zpoff) {
  return _mm512_sub_epi32(_mm512_loadu_si512(t), _mm512_mullo_epi32(_mm512_set1_epi32(zpoff), cs));
}

inline __m512 dequant(__m512i acc, float as, __m512 ws, const float* bias, bool relu) {
  const __m512 mult = _mm512_mul_ps(_mm512_set1_ps(as), ws);
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult);
  if (bias) y = _mm512_add_ps(y, _mm512_loadu_ps(bias));
  if (relu) {
    // y <= 0 (ordered: false for NaN) -> +0.0; NaN and positives pass, as np.maximum(y, 0).
    const __mmask16 le = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LE_OQ);
    y = _mm512_mask_mov_ps(y, le, _mm512_setzero_ps());
  }
  return y;
}

void s32_avx512(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
                int32_t* out, std::size_t ldo) {
  const __m512i cs = _mm512_loadu_si512(e.colsum);
  const __mmask16 m = col_mask(nc);
  for (std::size_t r = 0; r < mr; ++r)
    _mm512_mask_storeu_epi32(out + r * ldo, m, corrected(tile + r * e.ldt, cs, e.zpoff));
}

void f32_avx512(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
                float* out, std::size_t ldo) {
  const __m512i cs = _mm512_loadu_si512(e.colsum);
  const __m512 ws = _mm512_loadu_ps(e.w_scale);
  const __mmask16 m = col_mask(nc);
  for (std::size_t r = 0; r < mr; ++r) {
    const __m512 y = dequant(corrected(tile + r * e.ldt, cs, e.row_zpoff[r]), e.row_scale[r],
                             ws, e.bias, e.relu);
    _mm512_mask_storeu_ps(out + r * ldo, m, y);
  }
}

void q8_avx512(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
               uint8_t* out, std::size_t ldo) {
  const __m512i cs = _mm512_loadu_si512(e.colsum);
  const __m512 ws = _mm512_loadu_ps(e.w_scale);
  const __m512 inv = _mm512_set1_ps(e.inv), lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi);
  const __m512i zp = _mm512_set1_epi32(e.out_zp);
  const __mmask16 m = col_mask(nc);
  for (std::size_t r = 0; r < mr; ++r) {
    const __m512 y =
        dequant(corrected(tile + r * e.ldt, cs, e.zpoff), e.a_scale, ws, e.bias, e.relu);
    // y is never NaN here (finite scales, see linear_q_op), so max/min clamp like the reference.
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(y, inv), lo), hi);
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
    _mm_mask_storeu_epi8(out + r * ldo, m, _mm512_cvtepi32_epi8(q));
  }
}

}  // namespace

GemmEpilogues gemm_epilogues_avx512() {
  return GemmEpilogues{Isa::kAvx512Vnni, s32_avx512, f32_avx512, q8_avx512};
}

}  // namespace edgepack
