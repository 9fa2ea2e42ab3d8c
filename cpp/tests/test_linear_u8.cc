// linear_u8_op (float output on uint8 activations with per-row scale / zero point: edgepack.nn's
// static layers and im2col convs) against its spec, for every runnable GEMM kernel table, at 1
// and 2 threads, with K padded or not, strided rows, extreme values (0 / 255 against -128 / 127):
//   y[r][n] = float(sum_k (a[r][k] - zp[r]) * w[n][k]) * float(scale[r] * w_scale[n]) (+ bias)
//             (relu), the epilogue of reference.py epilogue_ref.
#include <cstring>
#include <vector>

#include "edgepack/gemm_ops.h"
#include "edgepack/parallel.h"
#include "test_util.h"

using namespace edgepack;

TEST(linear_u8_matches_spec) {
  const std::size_t shapes[][3] = {{1, 9, 32}, {3, 17, 5}, {37, 288, 64}, {130, 40, 19}};
  std::uniform_real_distribution<float> ub(-3.0f, 3.0f), us(0.001f, 0.05f);
  std::string tested;
  for (const GemmKernels& gk : gemm_kernel_list()) {
    if (!isa_supported_by_cpu(gk.isa)) continue;
    tested += std::string(" ") + isa_name(gk.isa);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (const auto& s : shapes)
        for (int extreme : {0, 1})
          for (std::size_t pad : {std::size_t{0}, std::size_t{5}}) {
            const std::size_t m = s[0], k = s[1], n = s[2], lda = k + pad;
            std::vector<uint8_t> a(m * lda);
            std::vector<int8_t> w(n * k);
            std::vector<float> ws(n), bias(n), rs(m);
            std::vector<int32_t> rz(m);
            for (std::size_t i = 0; i < a.size(); ++i)
              a[i] = extreme ? (i & 1 ? 255 : 0) : static_cast<uint8_t>(eptest::rng()() & 0xFF);
            for (std::size_t i = 0; i < w.size(); ++i)
              w[i] = extreme ? (i % 3 ? -128 : 127)
                             : static_cast<int8_t>(static_cast<int>(eptest::rng()() & 0xFF) - 128);
            for (auto& v : ws) v = us(eptest::rng());
            for (auto& v : bias) v = ub(eptest::rng());
            for (std::size_t r = 0; r < m; ++r) {
              rs[r] = us(eptest::rng());
              rz[r] = extreme ? (r & 1 ? 255 : 0) : static_cast<int32_t>(eptest::rng()() % 256);
            }
            for (bool with_bias : {false, true})
              for (bool relu : {false, true}) {
                std::vector<uint8_t> buf(packed_size(n, k));
                pack_weights(w.data(), n, k, k, ws.data(), with_bias ? bias.data() : nullptr,
                             buf.data());
                const PackedView p = view_packed(buf.data(), buf.size(), true);
                std::vector<float> got(m * n, -1.0f);
                linear_u8_op(gk, p, a.data(), m, lda, rs.data(), rz.data(), relu, got.data());
                std::size_t bad = 0;
                for (std::size_t r = 0; r < m; ++r)
                  for (std::size_t j = 0; j < n; ++j) {
                    int64_t acc = 0;
                    for (std::size_t t = 0; t < k; ++t)
                      acc += (int64_t{a[r * lda + t]} - rz[r]) * int64_t{w[j * k + t]};
                    const float mult = rs[r] * ws[j];
                    float y = static_cast<float>(acc) * mult;
                    if (with_bias) y = y + bias[j];
                    if (relu) y = y > 0.0f ? y : 0.0f;
                    if (std::memcmp(&y, &got[r * n + j], sizeof(float)) != 0) ++bad;
                  }
                EXPECT(bad == 0) << isa_name(gk.isa) << " threads " << threads << " m=" << m
                                 << " k=" << k << " n=" << n << " lda=" << lda << ": " << bad
                                 << " mismatches";
              }
          }
    }
  }
  set_num_threads(1);
  std::cout << "  linear_u8 tested:" << tested << "\n";
}
