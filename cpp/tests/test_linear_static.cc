// linear_static_op (static, calibrated per-tensor activations, float output: the entry point of
// edgepack.nn's static layers) against its spec, for every runnable GEMM x quant kernel table,
// at 1 and 2 threads: x quantized with ref::quantize_u8 (inv = 1 / a_scale in float32; +-inf
// saturate), int64 (a - zp) . w, y = float(acc) * float(a_scale * w_scale[n]) (+ bias) (relu).
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <limits>
#include <vector>

#include "edgepack/gemm_ops.h"
#include "edgepack/parallel.h"
#include "test_util.h"

using namespace edgepack;

namespace {

std::vector<float> expected(const std::vector<float>& x, std::size_t m, std::size_t k,
                            const std::vector<int8_t>& w, std::size_t n,
                            const std::vector<float>& ws, const std::vector<float>* bias,
                            float a_scale, int32_t zp, bool relu) {
  std::vector<uint8_t> a(m * k);
  ref::quantize_u8(x.data(), a.data(), m * k, 1.0f / a_scale, zp);
  std::vector<float> y(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (std::size_t t = 0; t < k; ++t)
        acc += (int64_t{a[i * k + t]} - zp) * int64_t{w[j * k + t]};
      const float mult = a_scale * ws[j];
      float v = static_cast<float>(acc) * mult;
      if (bias) v = v + (*bias)[j];
      if (relu) v = v > 0.0f ? v : 0.0f;
      y[i * n + j] = v;
    }
  return y;
}

}  // namespace

TEST(linear_static_matches_spec) {
  const std::size_t shapes[][3] = {{1, 9, 32}, {3, 17, 5}, {37, 288, 64}, {130, 40, 19}};
  for (const GemmKernels& gk : gemm_kernel_list()) {
    if (!isa_supported_by_cpu(gk.isa)) continue;
    for (const QuantKernels& qk : quant_kernel_list()) {
      if (!isa_supported_by_cpu(qk.isa)) continue;
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        for (const auto& s : shapes) {
          const std::size_t m = s[0], k = s[1], n = s[2];
          std::uniform_real_distribution<float> ux(-3.0f, 3.0f), us(0.001f, 0.02f);
          std::vector<float> x(m * k), ws(n), bias(n);
          std::vector<int8_t> w(n * k);
          for (auto& v : x) v = ux(eptest::rng());
          x[0] = std::numeric_limits<float>::infinity();  // saturates
          if (x.size() > 1) x[1] = -std::numeric_limits<float>::infinity();
          for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(eptest::rng()() & 0xFF) - 128);
          for (auto& v : ws) v = us(eptest::rng());
          for (auto& v : bias) v = ux(eptest::rng());
          for (bool with_bias : {false, true})
            for (bool relu : {false, true}) {
              std::vector<uint8_t> buf(packed_size(n, k));
              pack_weights(w.data(), n, k, k, ws.data(), with_bias ? bias.data() : nullptr,
                           buf.data());
              const PackedView p = view_packed(buf.data(), buf.size(), true);
              const float a_scale = 0.025f;
              const int32_t zp = static_cast<int32_t>(eptest::rng()() % 256);
              std::vector<float> got(m * n, -1.0f);
              linear_static_op(gk, qk, p, x.data(), m, k, a_scale, zp, relu, got.data());
              const auto want =
                  expected(x, m, k, w, n, ws, with_bias ? &bias : nullptr, a_scale, zp, relu);
              std::size_t bad = 0;
              for (std::size_t i = 0; i < got.size(); ++i)
                if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) ++bad;
              EXPECT(bad == 0) << isa_name(gk.isa) << "/" << isa_name(qk.isa) << " threads "
                               << threads << " m=" << m << " k=" << k << " n=" << n << ": "
                               << bad << " mismatches";
            }
        }
      }
    }
  }
  set_num_threads(1);
  // NaN raises
  std::vector<int8_t> w(4 * 8, 1);
  std::vector<float> ws(4, 0.01f), x(8, 1.0f), out(4);
  std::vector<uint8_t> buf(packed_size(4, 8));
  pack_weights(w.data(), 4, 8, 8, ws.data(), nullptr, buf.data());
  const PackedView p = view_packed(buf.data(), buf.size(), true);
  x[3] = std::nanf("");
  bool threw = false;
  try {
    linear_static_op(gemm_kernels(), quant_kernels(), p, x.data(), 1, 8, 0.1f, 0, false,
                     out.data());
  } catch (const std::domain_error&) {
    threw = true;
  }
  EXPECT(threw) << "NaN in x must throw std::domain_error";
}
