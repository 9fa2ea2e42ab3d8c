// Sparse int8: packing round trips, validation of corrupt buffers, and every sparse kernel
// compiled in and runnable here against a dense scalar loop (the spec of reference.py), bit for
// bit, at 1 and 2 threads, on edge shapes and extreme values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "edgepack/epilogue.h"
#include "edgepack/parallel.h"
#include "edgepack/quant.h"
#include "edgepack/sparse.h"
#include "test_util.h"

using namespace edgepack;

namespace {

enum class Pattern { kRandom, kBlocks, kDense, kZero, kOne, kExtreme };

struct Layer {
  std::size_t n, k;
  std::vector<int8_t> w;
  std::vector<float> scale, bias;
};

Layer make_layer(std::size_t n, std::size_t k, Pattern pat, double sparsity, std::size_t blk) {
  auto& g = eptest::rng();
  std::uniform_int_distribution<int> val(-128, 127);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_real_distribution<float> sc(1e-3f, 1e-1f), bi(-2.0f, 2.0f);
  Layer l{n, k, std::vector<int8_t>(n * k, 0), std::vector<float>(n), std::vector<float>(n)};
  for (std::size_t r = 0; r < n; ++r) {
    l.scale[r] = sc(g);
    l.bias[r] = bi(g);
    for (std::size_t c = 0; c < k; ++c) {
      int8_t& x = l.w[r * k + c];
      switch (pat) {
        case Pattern::kRandom:
          x = u(g) < sparsity ? 0 : static_cast<int8_t>(val(g));
          break;
        case Pattern::kBlocks: {
          // keep whole 1 x blk blocks, decided once per block
          std::mt19937 bg(static_cast<unsigned>(r * 7919 + c / blk + 17));
          x = std::uniform_real_distribution<double>(0, 1)(bg) < sparsity
                  ? 0
                  : static_cast<int8_t>(val(g));
          break;
        }
        case Pattern::kDense:
          x = static_cast<int8_t>(val(g));
          break;
        case Pattern::kZero:
          x = 0;
          break;
        case Pattern::kOne:
          x = 0;
          break;
        case Pattern::kExtreme:
          x = u(g) < 0.5 ? 0 : (u(g) < 0.5 ? -128 : 127);
          break;
      }
    }
  }
  if (pat == Pattern::kOne) l.w[(n / 2) * k + (k - 1)] = -128;
  // an all-zero row and an all-zero column when the shape allows
  if (pat != Pattern::kDense && n > 2)
    for (std::size_t c = 0; c < k; ++c) l.w[1 * k + c] = 0;
  if (pat != Pattern::kDense && k > 2)
    for (std::size_t r = 0; r < n; ++r) l.w[r * k + 2] = 0;
  return l;
}

std::vector<float> make_x(std::size_t m, std::size_t k, bool extreme) {
  auto& g = eptest::rng();
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::vector<float> x(m * k);
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t c = 0; c < k; ++c) {
      float v = u(g);
      if (extreme) {
        // rows that quantize to exactly 0 / 255 (zp = 0: all >= 0) or with a mid zero point
        if (r % 3 == 0) v = (c % 2) ? 10.0f : 0.0f;
        if (r % 3 == 1) v = (c % 2) ? -10.0f : 0.0f;  // zp = 255, a in {0, 255}
      }
      if (r % 5 == 4) v = 1.5f;  // constant row
      x[r * k + c] = v;
    }
  return x;
}

// The spec: dense scalar loop over the unpacked weights (reference.py's linear_int8_ref).
std::vector<float> dense_ref(const Layer& l, const std::vector<float>& x, std::size_t m, bool relu,
                             bool use_bias) {
  std::vector<float> y(m * l.n);
  std::vector<uint8_t> a(l.k);
  for (std::size_t r = 0; r < m; ++r) {
    float mn, mx;
    ref::minmax(x.data() + r * l.k, l.k, &mn, &mx);
    const QParams p = qparams_from_minmax(mn, mx, QDType::kUInt8, false);
    ref::quantize_u8(x.data() + r * l.k, a.data(), l.k, 1.0f / p.scale, p.zero_point);
    for (std::size_t n = 0; n < l.n; ++n) {
      int64_t acc = 0;
      for (std::size_t c = 0; c < l.k; ++c)
        acc += (int64_t{a[c]} - p.zero_point) * int64_t{l.w[n * l.k + c]};
      y[r * l.n + n] = dequant_epilogue(static_cast<int32_t>(acc), p.scale, l.scale[n],
                                        use_bias ? l.bias.data() : nullptr, n, relu);
    }
  }
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::size_t first_diff(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0) return i;
  return a.size();
}

void check_all_kernels(const Layer& l, std::size_t blk, const std::vector<std::size_t>& ms,
                       bool extreme_x, const char* what) {
  for (int use_bias = 0; use_bias < 2; ++use_bias) {
    const PackedSparse p = PackedSparse::pack(l.w.data(), l.n, l.k, l.scale.data(),
                                              use_bias ? l.bias.data() : nullptr, blk);
    for (std::size_t m : ms) {
      const std::vector<float> x = make_x(m, l.k, extreme_x);
      const bool relu = (m % 2) == 1;
      const std::vector<float> want = dense_ref(l, x, m, relu, use_bias);
      for (const SparseKernels& kern : sparse_kernel_list()) {
        if (!isa_enabled(kern.isa)) continue;
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          std::vector<float> got(m * l.n, -7.0f);
          sparse_linear_int8_op(kern, p, x.data(), m, got.data(), relu);
          const std::size_t d = first_diff(got, want);
          EXPECT(same_bits(got, want))
              << what << " isa=" << isa_name(kern.isa) << " N=" << l.n << " K=" << l.k << " M=" << m
              << " block=" << blk << " bias=" << use_bias << " threads=" << threads
              << " first diff at " << d << ": " << (d < got.size() ? got[d] : 0.0f) << " vs "
              << (d < want.size() ? want[d] : 0.0f);
        }
      }
    }
  }
  set_num_threads(2);
}

}  // namespace

TEST(sparse_kernels_match_dense_spec_random) {
  for (std::size_t blk : {4, 8, 16})
    for (std::size_t n : {1, 15, 16, 17, 40})
      for (std::size_t k : {1, 3, 4, 5, 8, 17, 64, 100}) {
        const Layer l = make_layer(n, k, Pattern::kRandom, 0.7, blk);
        check_all_kernels(l, blk, {1, 2, 5}, false, "random");
      }
}

TEST(sparse_kernels_match_dense_spec_tiles) {
  // M across the tile sizes (granules 1/4/8/16, tiles of 64 rows) and multi-slice N.
  for (std::size_t blk : {4, 16}) {
    const Layer l = make_layer(37, 75, Pattern::kBlocks, 0.8, blk);
    check_all_kernels(l, blk, {1, 3, 4, 7, 8, 9, 16, 17, 31, 33, 63, 64, 65, 130}, false, "tiles");
  }
}

TEST(sparse_kernels_multi_window) {
  // N past several 128-row sort windows (and a partial last window): slice groups that do not
  // start at 0, the window-buffered epilogue, GEMV slice ranges split over threads.
  for (std::size_t blk : {4, 8}) {
    const Layer l = make_layer(300, 70, Pattern::kRandom, 0.75, blk);
    check_all_kernels(l, blk, {1, 2, 17, 33}, false, "windows");
  }
  const Layer big = make_layer(1100, 64, Pattern::kBlocks, 0.9, 4);
  check_all_kernels(big, 4, {1, 5, 40}, false, "windows-big");
}

TEST(sparse_kernels_patterns_and_extremes) {
  const Pattern pats[] = {Pattern::kDense, Pattern::kZero, Pattern::kOne, Pattern::kExtreme,
                          Pattern::kBlocks};
  const char* names[] = {"dense", "zero", "one", "extreme", "blocks"};
  for (int i = 0; i < 5; ++i)
    for (std::size_t blk : {4, 8}) {
      const Layer l = make_layer(33, 130, pats[i], 0.9, blk);
      check_all_kernels(l, blk, {1, 2, 17, 40}, true, names[i]);
    }
}

TEST(sparse_kernels_max_k_exact) {
  // K = kMaxK with w = -128 and a = 255 / 0 everywhere: the largest |sum| the format allows.
  const std::size_t k = kMaxK, n = 3;
  Layer l{n, k, std::vector<int8_t>(n * k, -128), {0.01f, 0.02f, 0.03f}, {0.0f, 1.0f, -1.0f}};
  for (std::size_t c = 0; c < k; ++c) l.w[2 * k + c] = (c % 3) ? 127 : 0;
  check_all_kernels(l, 4, {1, 3}, true, "maxk");
}

TEST(sparse_pack_roundtrip_and_counts) {
  for (std::size_t blk : {4, 8, 16}) {
    const Layer l = make_layer(29, 53, Pattern::kRandom, 0.85, blk);
    const PackedSparse p =
        PackedSparse::pack(l.w.data(), l.n, l.k, l.scale.data(), l.bias.data(), blk);
    std::vector<int8_t> w(l.n * l.k, 1);
    p.unpack(w.data());
    EXPECT(w == l.w) << "unpack differs, block " << blk;
    std::size_t nnz = 0;
    for (int8_t x : l.w) nnz += x != 0;
    EXPECT(p.header().nnz == nnz) << p.header().nnz << " vs " << nnz;
    const PackedSparse q = PackedSparse::from_bytes(p.bytes().data(), p.bytes().size());
    EXPECT(q.bytes() == p.bytes());
  }
}

TEST(sparse_pack_rejects_bad_input) {
  const Layer l = make_layer(4, 8, Pattern::kRandom, 0.5, 4);
  auto throws = [&](std::size_t n, std::size_t k, const float* s, const float* b, std::size_t blk) {
    try {
      PackedSparse::pack(l.w.data(), n, k, s, b, blk);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  EXPECT(throws(4, 8, l.scale.data(), nullptr, 3)) << "block 3";
  EXPECT(throws(4, 8, l.scale.data(), nullptr, 32)) << "block 32";
  EXPECT(throws(0, 8, l.scale.data(), nullptr, 4)) << "N = 0";
  EXPECT(throws(4, 0, l.scale.data(), nullptr, 4)) << "K = 0";
  std::vector<float> bad_scale = l.scale;
  bad_scale[2] = 0.0f;
  EXPECT(throws(4, 8, bad_scale.data(), nullptr, 4)) << "zero scale";
  bad_scale[2] = std::nanf("");
  EXPECT(throws(4, 8, bad_scale.data(), nullptr, 4)) << "NaN scale";
  std::vector<float> bad_bias = l.bias;
  bad_bias[0] = INFINITY;
  EXPECT(throws(4, 8, l.scale.data(), bad_bias.data(), 4)) << "inf bias";
  std::vector<int8_t> big((kMaxK + 1), 1);
  float s1 = 1.0f;
  bool threw = false;
  try {
    PackedSparse::pack(big.data(), 1, kMaxK + 1, &s1, nullptr, 4);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT(threw) << "K > kMaxK";
}

TEST(sparse_from_bytes_rejects_every_flip_and_truncation) {
  const Layer l = make_layer(21, 37, Pattern::kRandom, 0.6, 4);
  const PackedSparse p = PackedSparse::pack(l.w.data(), l.n, l.k, l.scale.data(), l.bias.data(), 4);
  const std::vector<uint8_t>& good = p.bytes();
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
      std::vector<uint8_t> b = good;
      b[i] ^= mask;
      try {
        PackedSparse::from_bytes(b.data(), b.size());
        ++accepted;
      } catch (const std::invalid_argument&) {
      }
    }
  }
  EXPECT(accepted == 0) << accepted << " corrupted buffers were accepted";
  for (std::size_t len = 0; len < good.size(); len += 7) {
    bool threw = false;
    try {
      PackedSparse::from_bytes(good.data(), len);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    EXPECT(threw) << "truncated to " << len;
  }
}

TEST(sparse_op_rejects_nan_and_inf) {
  const Layer l = make_layer(5, 9, Pattern::kRandom, 0.5, 4);
  const PackedSparse p = PackedSparse::pack(l.w.data(), l.n, l.k, l.scale.data(), nullptr, 4);
  for (float bad : {std::nanf(""), INFINITY}) {
    std::vector<float> x(2 * l.k, 1.0f), y(2 * l.n);
    x[l.k + 3] = bad;
    bool threw = false;
    try {
      sparse_linear_int8_op(sparse_kernels(), p, x.data(), 2, y.data(), false);
    } catch (const std::domain_error&) {
      threw = true;
    }
    EXPECT(threw) << "x with " << bad;
  }
}

TEST(sparse_packed_size_at_90_percent) {
  // 1 x 4 block-pruned at 90%: the bytes (indices and metadata included) stay <= 0.2 x dense,
  // at K = 1024 (the smallest benchmark shape; per-row metadata is 18 bytes).
  const std::size_t n = 128, k = 1024;
  const Layer l = make_layer(n, k, Pattern::kBlocks, 0.9, 4);
  const PackedSparse p = PackedSparse::pack(l.w.data(), n, k, l.scale.data(), l.bias.data(), 4);
  const double ratio = static_cast<double>(p.bytes().size()) / static_cast<double>(n * k);
  EXPECT(ratio <= 0.2) << "packed/dense = " << ratio;
}

TEST(sparse_kernels_multi_panel_tiles_and_k_chunks) {
  // Row tiles of two panels (32 rows) with a one-panel or partial remainder (M = 33, 48, 50,
  // 64, 100), the small 8-row panel (M <= 8), and K large enough that two AVX-512 panels exceed
  // 32 KiB (K-chunked passes), with padded K, padding lanes and a partial last window (N = 300).
  for (std::size_t blk : {4, 8, 16}) {
    const Layer l = make_layer(300, 1100, Pattern::kBlocks, 0.85, blk);
    check_all_kernels(l, blk, {2, 8, 33, 48, 100}, false, "panels");
  }
  const Layer l = make_layer(130, 70, Pattern::kRandom, 0.6, 4);  // K < one 64-byte pack step
  check_all_kernels(l, 4, {16, 31, 32, 50, 64}, true, "short-k");
}

TEST(sparse_u8_op_matches_spec_with_row_stride) {
  // sparse_linear_u8_op on pre-quantized rows with a row stride past K (the bytes in between
  // must not matter), per-row zero points across [0, 255], every kernel, 1 and 2 threads.
  auto& g = eptest::rng();
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t blk : {4, 16})
    for (std::size_t k : {37, 600}) {
      const Layer l = make_layer(150, k, Pattern::kBlocks, 0.8, blk);
      const PackedSparse p =
          PackedSparse::pack(l.w.data(), l.n, l.k, l.scale.data(), l.bias.data(), blk);
      for (std::size_t m : {1, 7, 40}) {
        const std::size_t lda = k + 13;
        std::vector<uint8_t> a(m * lda);
        for (auto& b : a) b = static_cast<uint8_t>(byte(g));
        std::vector<float> rs(m);
        std::vector<int32_t> zp(m);
        for (std::size_t r = 0; r < m; ++r) {
          rs[r] = 0.01f + 0.001f * static_cast<float>(r);
          zp[r] = r == 0 ? 0 : (r == 1 ? 255 : byte(g));
        }
        const bool relu = (m % 2) == 1;
        std::vector<float> want(m * l.n);
        for (std::size_t r = 0; r < m; ++r)
          for (std::size_t n = 0; n < l.n; ++n) {
            int64_t acc = 0;
            for (std::size_t c = 0; c < k; ++c)
              acc += (int64_t{a[r * lda + c]} - zp[r]) * int64_t{l.w[n * k + c]};
            want[r * l.n + n] = dequant_epilogue(static_cast<int32_t>(acc), rs[r], l.scale[n],
                                                 l.bias.data(), n, relu);
          }
        for (const SparseKernels& kern : sparse_kernel_list()) {
          if (!isa_enabled(kern.isa)) continue;
          for (int threads : {1, 2}) {
            set_num_threads(threads);
            std::vector<float> got(m * l.n, -7.0f);
            sparse_linear_u8_op(kern, p, a.data(), lda, m, rs.data(), zp.data(), got.data(), relu);
            EXPECT(same_bits(got, want))
                << "u8 isa=" << isa_name(kern.isa) << " K=" << k << " M=" << m << " block=" << blk
                << " threads=" << threads << " first diff at " << first_diff(got, want);
          }
        }
      }
    }
  set_num_threads(2);
}
