// maxpool2d_nhwc_f32 against a scalar reference of torch's max_pool2d rule (start at -inf, take
// v when v > max or v is NaN, skip taps outside the image), for channel counts that exercise the
// 16-wide, 4-wide and scalar paths, padding, dilation and ceil mode, at 1 and 2 threads. Runs
// natively and under qemu (the vector-extension code is NEON there).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "edgepack/parallel.h"
#include "edgepack/pool.h"
#include "test_util.h"

using namespace edgepack;

namespace {

float ref_at(const std::vector<float>& x, const Pool2dShape& s, std::size_t b, std::size_t oy,
             std::size_t ox, std::size_t ch) {
  float m = -std::numeric_limits<float>::infinity();
  for (int ky = 0; ky < s.kh; ++ky)
    for (int kx = 0; kx < s.kw; ++kx) {
      const long iy = static_cast<long>(oy) * s.sh - s.ph + static_cast<long>(ky) * s.dh;
      const long ix = static_cast<long>(ox) * s.sw - s.pw + static_cast<long>(kx) * s.dw;
      if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h) || ix >= static_cast<long>(s.w))
        continue;
      const float v = x[((b * s.h + iy) * s.w + ix) * s.c + ch];
      if (v > m || std::isnan(v)) m = v;
    }
  return m;
}

}  // namespace

TEST(maxpool2d_nhwc_matches_reference) {
  struct P {
    int k0, k1, s0, s1, p0, p1, d0, d1;
    bool ceil;
  };
  const P params[] = {{2, 2, 2, 2, 0, 0, 1, 1, false},
                      {3, 3, 2, 2, 1, 1, 1, 1, true},
                      {3, 2, 2, 1, 1, 0, 1, 2, true},
                      {2, 2, 1, 1, 0, 0, 2, 2, false},
                      {1, 1, 1, 1, 0, 0, 1, 1, false}};
  const std::size_t chans[] = {1, 3, 4, 16, 20, 37, 64};
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::size_t bad = 0;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const P& p : params)
      for (std::size_t c : chans) {
        const std::size_t n = 2, h = 9, w = 8;
        Pool2dShape s{n, h, w, c, 0, 0, p.k0, p.k1, p.s0, p.s1, p.p0, p.p1, p.d0, p.d1};
        s.oh = pool_out_size(h, p.k0, p.s0, p.p0, p.d0, p.ceil);
        s.ow = pool_out_size(w, p.k1, p.s1, p.p1, p.d1, p.ceil);
        std::vector<float> x(n * h * w * c);
        for (auto& v : x) {
          v = u(eptest::rng());
          if (v > 2.7f) v = std::numeric_limits<float>::quiet_NaN();
          if (v < -2.8f) v = -std::numeric_limits<float>::infinity();
        }
        std::vector<float> y(n * s.oh * s.ow * c, 123.0f);
        maxpool2d_nhwc_f32(x.data(), s, y.data());
        for (std::size_t b = 0; b < n; ++b)
          for (std::size_t oy = 0; oy < s.oh; ++oy)
            for (std::size_t ox = 0; ox < s.ow; ++ox)
              for (std::size_t ch = 0; ch < c; ++ch) {
                const float want = ref_at(x, s, b, oy, ox, ch);
                const float got = y[((b * s.oh + oy) * s.ow + ox) * c + ch];
                const bool same =
                    std::isnan(want) ? std::isnan(got) : std::memcmp(&want, &got, 4) == 0;
                if (!same && bad++ < 5) {
                  EXPECT(false) << "c=" << c << " k=" << p.k0 << "x" << p.k1 << " at " << b << ","
                                << oy << "," << ox << "," << ch << ": " << got << " vs " << want;
                }
              }
      }
  }
  set_num_threads(1);
  EXPECT(bad == 0);
}

TEST(pool_out_size_follows_torch) {
  EXPECT(pool_out_size(26, 2, 2, 0, 1, false) == 13);
  EXPECT(pool_out_size(11, 2, 2, 0, 1, false) == 5);
  EXPECT(pool_out_size(11, 2, 2, 0, 1, true) == 6);
  EXPECT(pool_out_size(5, 3, 2, 1, 1, true) == 3);
  EXPECT(pool_out_size(3, 2, 2, 1, 1, true) == 2);  // a last window must start inside
  EXPECT(pool_out_size(1, 2, 2, 0, 1, false) == 0);
}
