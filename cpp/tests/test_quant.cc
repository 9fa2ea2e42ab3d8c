// Every quantization kernel table compiled in (and runnable here) against the scalar reference,
// bit for bit: odd sizes, tails, extreme values, half-way points, both dtypes, per-element params.
#include <cmath>
#include <cstring>
#include <limits>

#include "edgepack/quant.h"
#include "test_util.h"

using namespace edgepack;

namespace {

std::vector<float> test_values(std::size_t n) {
  std::uniform_real_distribution<float> u(-300.0f, 300.0f);
  std::vector<float> x(n);
  const float specials[] = {0.0f,
                            -0.0f,
                            0.5f,
                            -0.5f,
                            1.5f,
                            -1.5f,
                            2.5f,
                            126.5f,
                            127.5f,
                            -128.5f,
                            1e-40f,
                            -1e-40f,
                            1e30f,
                            -1e30f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (std::size_t i = 0; i < n; ++i)
    x[i] = (i % 5 == 0) ? specials[(i / 5) % (sizeof(specials) / sizeof(float))] : u(eptest::rng());
  return x;
}

const std::size_t kSizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 1000};

}  // namespace

TEST(quant_kernels_match_reference) {
  const QuantKernels& r = quant_kernel_list().front();
  for (const QuantKernels& k : quant_kernel_list()) {
    if (!isa_supported_by_cpu(k.isa)) continue;
    for (std::size_t n : kSizes)
      for (float scale : {1.0f, 0.37f, 2.5f})
        for (int zp : {0, 3, -128, 127, 255}) {
          const auto x = test_values(n);
          for (int s = 0; s < 2; ++s) {
            const bool sgn = s == 0;
            if (sgn && (zp < -128 || zp > 127)) continue;
            if (!sgn && zp < 0) continue;
            std::vector<uint8_t> a(n), b(n);
            const float inv = 1.0f / scale;
            (sgn ? r.quantize_s8 : r.quantize_u8)(x.data(), a.data(), n, inv, zp);
            const bool nan = (sgn ? k.quantize_s8 : k.quantize_u8)(x.data(), b.data(), n, inv, zp);
            EXPECT(!nan) << isa_name(k.isa);
            EXPECT(a == b) << isa_name(k.isa) << " quantize n=" << n << " zp=" << zp;
            std::vector<float> fa(n), fb(n);
            (sgn ? r.dequantize_s8 : r.dequantize_u8)(a.data(), fa.data(), n, scale, zp);
            (sgn ? k.dequantize_s8 : k.dequantize_u8)(a.data(), fb.data(), n, scale, zp);
            EXPECT(std::memcmp(fa.data(), fb.data(), n * 4) == 0)
                << isa_name(k.isa) << " dequantize n=" << n;
            std::vector<float> invs(n), scs(n);
            std::vector<int32_t> zps(n);
            for (std::size_t i = 0; i < n; ++i) {
              scs[i] = scale * (1 + 0.01f * (i % 7));
              invs[i] = 1.0f / scs[i];
              zps[i] = sgn ? static_cast<int32_t>(i % 256) - 128 : static_cast<int32_t>(i % 256);
            }
            (sgn ? r.quantize_vec_s8 : r.quantize_vec_u8)(x.data(), a.data(), n, invs.data(),
                                                          zps.data());
            (sgn ? k.quantize_vec_s8 : k.quantize_vec_u8)(x.data(), b.data(), n, invs.data(),
                                                          zps.data());
            EXPECT(a == b) << isa_name(k.isa) << " quantize_vec n=" << n;
            (sgn ? r.dequantize_vec_s8 : r.dequantize_vec_u8)(a.data(), fa.data(), n, scs.data(),
                                                              zps.data());
            (sgn ? k.dequantize_vec_s8 : k.dequantize_vec_u8)(a.data(), fb.data(), n, scs.data(),
                                                              zps.data());
            EXPECT(std::memcmp(fa.data(), fb.data(), n * 4) == 0)
                << isa_name(k.isa) << " dequantize_vec";
          }
        }
  }
}

TEST(quant_kernels_report_nan) {
  for (const QuantKernels& k : quant_kernel_list()) {
    if (!isa_supported_by_cpu(k.isa)) continue;
    for (std::size_t n : kSizes)
      for (std::size_t pos : {std::size_t{0}, n / 2, n - 1}) {
        auto x = test_values(n);
        x[pos] = std::numeric_limits<float>::quiet_NaN();
        std::vector<uint8_t> q(n);
        EXPECT(k.quantize_s8(x.data(), q.data(), n, 1.0f, 0)) << isa_name(k.isa) << " n=" << n;
        float mn, mx;
        EXPECT(k.minmax(x.data(), n, &mn, &mx)) << isa_name(k.isa) << " minmax n=" << n;
      }
  }
}

TEST(minmax_matches_reference) {
  for (const QuantKernels& k : quant_kernel_list()) {
    if (!isa_supported_by_cpu(k.isa)) continue;
    for (std::size_t n : kSizes) {
      const auto x = test_values(n);
      float a0, a1, b0, b1;
      ref::minmax(x.data(), n, &a0, &a1);
      EXPECT(!k.minmax(x.data(), n, &b0, &b1));
      EXPECT(a0 == b0 && a1 == b1) << isa_name(k.isa) << " n=" << n;
    }
  }
}

// Typical data (no value near the int16 clip) keeps the SIMD kernels on their unclamped fast
// pass; one -inf or huge value forces the clamped redo. Every start offset, so the AVX-512
// head peeling (to a 64-byte boundary) runs at every length.
TEST(quant_kernels_fast_pass_redo_and_alignment) {
  const QuantKernels& r = quant_kernel_list().front();
  std::uniform_real_distribution<float> u(-200.0f, 200.0f);
  std::vector<float> base(4200 + 16);
  for (float& v : base) v = u(eptest::rng());
  for (const QuantKernels& k : quant_kernel_list()) {
    if (!isa_supported_by_cpu(k.isa)) continue;
    for (std::size_t off = 0; off < 16; ++off)
      for (std::size_t n :
           {std::size_t{64}, std::size_t{100}, std::size_t{1000}, std::size_t{4099}})
        for (int variant = 0; variant < 3; ++variant) {
          std::vector<float> xs(base.begin(), base.end());
          float* x = xs.data() + off;
          if (variant == 1) x[n / 2] = -std::numeric_limits<float>::infinity();
          if (variant == 2) x[n - 1] = 3e9f;
          for (int zp : {0, 5}) {
            std::vector<uint8_t> a(n + 16), b(n + 16);
            r.quantize_s8(x, a.data() + off, n, 0.5f, zp);
            EXPECT(!k.quantize_s8(x, b.data() + off, n, 0.5f, zp)) << isa_name(k.isa);
            EXPECT(a == b) << isa_name(k.isa) << " off=" << off << " n=" << n << " v=" << variant;
            r.quantize_u8(x, a.data() + off, n, 0.5f, zp + 100);
            k.quantize_u8(x, b.data() + off, n, 0.5f, zp + 100);
            EXPECT(a == b) << isa_name(k.isa) << " u8 off=" << off << " n=" << n;
            std::vector<float> invs(n);
            std::vector<int32_t> zps(n);
            for (std::size_t i = 0; i < n; ++i) {
              invs[i] = 1.0f / (0.3f + 0.01f * static_cast<float>(i % 13));
              zps[i] = static_cast<int32_t>(i % 200) - 100 + zp;
            }
            r.quantize_vec_s8(x, a.data() + off, n, invs.data(), zps.data());
            EXPECT(!k.quantize_vec_s8(x, b.data() + off, n, invs.data(), zps.data()));
            EXPECT(a == b) << isa_name(k.isa) << " vec off=" << off << " n=" << n;
            for (auto& v : zps) v += 100;
            r.quantize_vec_u8(x, a.data() + off, n, invs.data(), zps.data());
            k.quantize_vec_u8(x, b.data() + off, n, invs.data(), zps.data());
            EXPECT(a == b) << isa_name(k.isa) << " vec u8 off=" << off << " n=" << n;
            std::vector<float> fa(n + 16), fb(n + 16);
            r.dequantize_s8(a.data(), fa.data() + off, n, 0.37f, zp);
            k.dequantize_s8(a.data(), fb.data() + off, n, 0.37f, zp);
            EXPECT(std::memcmp(fa.data(), fb.data(), (n + 16) * 4) == 0)
                << isa_name(k.isa) << " dequantize off=" << off << " n=" << n;
          }
        }
  }
}
