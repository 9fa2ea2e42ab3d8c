// AVX-512 VNNI micro-kernel, up to 16 rows x 16 columns, c4 groups. Exact.
//
// Scheme: one 64-byte panel group (16 columns x 4 k, int8) is exactly one zmm load. Each row's
// 4 A bytes are broadcast with vpbroadcastd (a load-port uop, no shuffle) and vpdpbusd multiplies
// unsigned A bytes by signed B bytes and adds the four products into each int32 lane. vpdpbusd
// (not the saturating vpdpbusds) accumulates in plain int32: every product fits 16 bits signed,
// the sum of four fits easily, and the int32 total is exact for K <= kMaxK (gemm.h). A is read as
// uint8 (AFormat::kU8).
// Register use: one accumulator per row (16 zmm for 16 rows), one B register, broadcasts folded
// into the instruction's memory operand. vpdpbusd has a latency of ~5 cycles and up to two issue
// per cycle, so ~10 independent chains are needed: tiles of few rows (the GEMV path, M <= 4)
// split K over 4 accumulator sets (groups g mod 4) and add them at the end.
#include <immintrin.h>

#include <cstring>

#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr int kMaxMr = 16;

inline __m512i bcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// KS accumulator sets per row, interleaved over groups; groups = kp / 4 is even.
template <int MR, int KS>
void ukernel_t(std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b, int32_t* c,
               std::size_t ldc) {
  __m512i acc[KS][MR];
  for (int s = 0; s < KS; ++s)
    for (int r = 0; r < MR; ++r) acc[s][r] = _mm512_setzero_si512();
  const std::size_t groups = kp / 4;
  std::size_t g = 0;
  for (; g + KS <= groups; g += KS) {
    for (int s = 0; s < KS; ++s) {
      const __m512i bv = _mm512_loadu_si512(b + 64 * (g + s));
      for (int r = 0; r < MR; ++r)
        acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], bcast_a(a + r * lda + 4 * (g + s)), bv);
    }
  }
  for (; g < groups; ++g) {
    const __m512i bv = _mm512_loadu_si512(b + 64 * g);
    for (int r = 0; r < MR; ++r)
      acc[0][r] = _mm512_dpbusd_epi32(acc[0][r], bcast_a(a + r * lda + 4 * g), bv);
  }
  for (int r = 0; r < MR; ++r) {
    __m512i t = acc[0][r];
    for (int s = 1; s < KS; ++s) t = _mm512_add_epi32(t, acc[s][r]);
    _mm512_storeu_si512(c + r * ldc, t);
  }
}

using Fn = void (*)(std::size_t, const uint8_t*, std::size_t, const int8_t*, int32_t*,
                    std::size_t);

// Accumulator sets per tile height: enough independent vpdpbusd chains for small tiles.
const Fn kTable[kMaxMr + 1] = {
    nullptr,
    ukernel_t<1, 4>,  ukernel_t<2, 4>,  ukernel_t<3, 4>,  ukernel_t<4, 2>,
    ukernel_t<5, 2>,  ukernel_t<6, 2>,  ukernel_t<7, 2>,  ukernel_t<8, 1>,
    ukernel_t<9, 1>,  ukernel_t<10, 1>, ukernel_t<11, 1>, ukernel_t<12, 1>,
    ukernel_t<13, 1>, ukernel_t<14, 1>, ukernel_t<15, 1>, ukernel_t<16, 1>,
};

void ukernel(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
             const int8_t* b, int32_t* c, std::size_t ldc) {
  kTable[mr](kp, a, lda, b, c, ldc);
}

}  // namespace

GemmKernels gemm_kernels_avx512vnni() {
  return GemmKernels{Isa::kAvx512Vnni, AFormat::kU8, kMaxMr, ukernel};
}

}  // namespace edgepack
