// Max pooling on NHWC float32 (see edgepack/pool.h). The channel loop is innermost and
// contiguous, so the compiler vectorizes the max with a NaN-propagating select.
#include "edgepack/pool.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "edgepack/parallel.h"

namespace edgepack {
namespace {
typedef float V4 __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));
}  // namespace

std::size_t pool_out_size(std::size_t in, int k, int s, int p, int d, bool ceil_mode) {
  const long span = static_cast<long>(in) + 2L * p - static_cast<long>(d) * (k - 1) - 1;
  if (span < 0) return 0;
  long out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  // ceil mode: the last window must start inside the image or its left padding (torch rule)
  if (ceil_mode && (out - 1) * s >= static_cast<long>(in) + p) --out;
  return static_cast<std::size_t>(out);
}

// Calls f(pointer to the tap's channel c0) for every tap of the window at (y0, x0) that lies
// inside the image (torch pads with -inf, so outside taps never win: skipping them is the same).
template <class F>
inline void for_each_tap(const float* xi, const Pool2dShape& s, long y0, long x0, std::size_t c0,
                         F f) {
  for (int ky = 0; ky < s.kh; ++ky) {
    const long iy = y0 + static_cast<long>(ky) * s.dh;
    if (iy < 0 || iy >= static_cast<long>(s.h)) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      const long ix = x0 + static_cast<long>(kx) * s.dw;
      if (ix < 0 || ix >= static_cast<long>(s.w)) continue;
      f(xi + (static_cast<std::size_t>(iy) * s.w + ix) * s.c + c0);
    }
  }
}

// One output pixel's channels [c0, c0 + 4 * NV) in NV vectors of 4 floats held in registers
// (GCC/Clang vector extensions: SSE on x86, NEON on ARM).
template <int NV>
inline void pool_pixel_v(const float* xi, const Pool2dShape& s, long y0, long x0, std::size_t c0,
                         float* out) {
  V4 acc[NV];
  for (int q = 0; q < NV; ++q) acc[q] = V4{} - std::numeric_limits<float>::infinity();
  for_each_tap(xi, s, y0, x0, c0, [&](const float* p) {
    for (int q = 0; q < NV; ++q) {
      V4 v;
      std::memcpy(&v, p + 4 * q, sizeof v);
      const V4i take = (v > acc[q]) | (v != v);  // torch's rule: v > max or v is NaN
      acc[q] = take ? v : acc[q];
    }
  });
  std::memcpy(out + c0, acc, sizeof acc);
}

void maxpool2d_nhwc_f32(const float* x, const Pool2dShape& s, float* y) {
  const std::size_t rows = s.n * s.oh, c = s.c;
  const std::size_t grain =
      std::max<std::size_t>(1, (1u << 14) / std::max<std::size_t>(1, s.ow * c * s.kh * s.kw));
  const float ninf = -std::numeric_limits<float>::infinity();
  parallel_for(rows, grain, [&, s](std::size_t b, std::size_t e) {  // s by value: no aliasing
    for (std::size_t r = b; r < e; ++r) {
      const std::size_t img = r / s.oh, oy = r % s.oh;
      const float* xi = x + img * s.h * s.w * c;
      float* yo = y + r * s.ow * c;
      const long y0 = static_cast<long>(oy) * s.sh - s.ph;
      for (std::size_t ox = 0; ox < s.ow; ++ox, yo += c) {
        const long x0 = static_cast<long>(ox) * s.sw - s.pw;
        std::size_t c0 = 0;
        for (; c0 + 16 <= c; c0 += 16) pool_pixel_v<4>(xi, s, y0, x0, c0, yo);
        for (; c0 + 4 <= c; c0 += 4) pool_pixel_v<1>(xi, s, y0, x0, c0, yo);
        for (; c0 < c; ++c0) {  // scalar tail, the same rule (torch's kernel starts at -inf)
          float m = ninf;
          for_each_tap(xi, s, y0, x0, c0, [&](const float* p) {
            if ((*p > m) | (*p != *p)) m = *p;
          });
          yo[c0] = m;
        }
      }
    }
  });
}

}  // namespace edgepack
