// The GEMM driver (packing, zero-point corrections, blocking, threads, fused epilogues) against
// plain scalar loops, with every GEMM kernel table runnable on this CPU plugged in (the
// micro-kernels themselves are checked against ukernel_ref in test_gemm_ukernels.cc). Shapes
// walk K below/equal/above multiples of 4 and 8, partial M tiles (1..10, 17, 33) and partial N
// panels; values include the adversarial extremes (a = 0/255, w = -128/127) and zero points
// 0/128/255 (uint8) and -128/0/127 (int8). Every output is compared bit for bit.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "edgepack/gemm_ops.h"
#include "edgepack/parallel.h"
#include "gemm/gemm_epilogue.h"
#include "gemm/gemm_wide.h"
#include "test_util.h"

using namespace edgepack;

namespace {

enum class Fill { kRandom, kExtreme, kMaxPos, kMaxNeg };

struct Problem {
  std::size_t m, k, n;
  std::vector<uint8_t> a;  // raw bytes: uint8 or int8 values
  std::vector<int8_t> w;
  std::vector<float> scale, bias;
};

Problem make(std::size_t m, std::size_t k, std::size_t n, Fill f) {
  Problem p{m,
            k,
            n,
            std::vector<uint8_t>(m * k),
            std::vector<int8_t>(n * k),
            std::vector<float>(n),
            std::vector<float>(n)};
  auto& g = eptest::rng();
  for (std::size_t i = 0; i < p.a.size(); ++i) {
    switch (f) {
      case Fill::kRandom:
        p.a[i] = static_cast<uint8_t>(g() & 0xFF);
        break;
      case Fill::kExtreme:
        p.a[i] = (g() & 1) ? 255 : 0;
        break;
      case Fill::kMaxPos:
        p.a[i] = 255;
        break;
      case Fill::kMaxNeg:
        p.a[i] = 0;
        break;
    }
  }
  for (std::size_t i = 0; i < p.w.size(); ++i) {
    switch (f) {
      case Fill::kRandom:
        p.w[i] = static_cast<int8_t>(static_cast<int>(g() & 0xFF) - 128);
        break;
      case Fill::kExtreme:
        p.w[i] = (g() & 1) ? 127 : -128;
        break;
      case Fill::kMaxPos:
        p.w[i] = -128;
        break;
      case Fill::kMaxNeg:
        p.w[i] = (i % 3) ? 127 : -128;
        break;
    }
  }
  std::uniform_real_distribution<float> us(0.0005f, 0.05f), ub(-3.0f, 3.0f);
  for (std::size_t j = 0; j < n; ++j) {
    p.scale[j] = us(g);
    p.bias[j] = ub(g);
  }
  return p;
}

std::vector<uint8_t> pack(const Problem& p, bool bias) {
  std::vector<uint8_t> buf(packed_size(p.n, p.k));
  pack_weights(p.w.data(), p.n, p.k, p.k, p.scale.data(), bias ? p.bias.data() : nullptr,
               buf.data());
  return buf;
}

// int64 (a - zp) . w for row m, column n; int8 A is read as signed.
int64_t dot(const Problem& p, AType at, int32_t zp, std::size_t m, std::size_t n) {
  int64_t s = 0;
  for (std::size_t k = 0; k < p.k; ++k) {
    const int64_t av = at == AType::kS8 ? static_cast<int8_t>(p.a[m * p.k + k]) : p.a[m * p.k + k];
    s += (av - zp) * p.w[n * p.k + k];
  }
  return s;
}

float relu_np(float y) { return (y > 0.0f || std::isnan(y)) ? y : 0.0f; }

float epilogue(int64_t acc, float as, float ws, const float* bias, bool relu) {
  const float mult = as * ws;
  float y = static_cast<float>(static_cast<int32_t>(acc)) * mult;
  if (bias) y = y + *bias;
  if (relu) y = relu_np(y);
  return y;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

const std::size_t kKs[] = {1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 64, 100, 255, 1000};
const std::size_t kNs[] = {1, 15, 16, 17, 33, 50};
const std::size_t kMs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 33};

template <class F>
void for_each_kernel(F&& f) {
  for (const GemmKernels& k : gemm_kernel_list())
    if (isa_supported_by_cpu(k.isa)) f(k);
}

}  // namespace

TEST(gemm_pack_roundtrip_and_validation) {
  for (std::size_t n : {1, 16, 17, 40})
    for (std::size_t k : {1, 7, 8, 33}) {
      const Problem p = make(2, k, n, Fill::kRandom);
      for (bool bias : {false, true}) {
        auto buf = pack(p, bias);
        const PackedView v = view_packed(buf.data(), buf.size(), true);
        EXPECT(v.n == n && v.k == k && v.kp % kKP == 0 && v.np % kNR == 0 && v.has_bias == bias);
        std::vector<int8_t> w(n * k);
        unpack_weights(v, w.data());
        EXPECT(w == p.w) << "unpack n=" << n << " k=" << k;
        for (std::size_t j = 0; j < n; ++j) {
          int32_t s = 0;
          for (std::size_t i = 0; i < k; ++i) s += p.w[j * k + i];
          EXPECT(v.colsum[j] == s && v.scale[j] == p.scale[j]);
          EXPECT(v.bias[j] == (bias ? p.bias[j] : 0.0f));
        }
        // Any flipped payload bit breaks the checksum; truncation and header damage are caught
        // even without it.
        auto bad = buf;
        bad[bad.size() / 2] ^= 0x10;
        bool threw = false;
        try {
          view_packed(bad.data(), bad.size(), true);
        } catch (const std::invalid_argument&) {
          threw = true;
        }
        EXPECT(threw) << "corruption not detected";
        for (std::size_t cut :
             {std::size_t{0}, std::size_t{10}, kPackedHeaderBytes, buf.size() - 1}) {
          threw = false;
          try {
            view_packed(buf.data(), cut, false);
          } catch (const std::invalid_argument&) {
            threw = true;
          }
          EXPECT(threw) << "truncation to " << cut << " not detected";
        }
        for (std::size_t off : {0, 8, 12, 24, 40, 100}) {
          bad = buf;
          bad[off] ^= 0x01;
          threw = false;
          try {
            view_packed(bad.data(), bad.size(), true);
          } catch (const std::invalid_argument&) {
            threw = true;
          }
          EXPECT(threw) << "header byte " << off << " damage not detected";
        }
      }
    }
}

TEST(gemm_s32_driver_matches_scalar) {
  for_each_kernel([](const GemmKernels& gk) {
    std::size_t idx = 0, bad = 0;
    for (std::size_t m : kMs)
      for (std::size_t k : kKs) {
        const std::size_t n = kNs[idx % 6];
        const Fill f = static_cast<Fill>(idx % 4);
        const AType at = (idx / 3) % 2 ? AType::kS8 : AType::kU8;
        const int32_t zps_u8[] = {0, 128, 255}, zps_s8[] = {-128, 0, 127};
        const int32_t zp = at == AType::kS8 ? zps_s8[idx % 3] : zps_u8[idx % 3];
        ++idx;
        const Problem p = make(m, k, n, f);
        const auto buf = pack(p, false);
        const PackedView v = view_packed(buf.data(), buf.size(), true);
        std::vector<int32_t> out(m * n);
        gemm_s32_op(gk, v, p.a.data(), at, m, k, zp, out.data());
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j)
            if (out[i * n + j] != dot(p, at, zp, i, j) && bad++ < 5) {
              EXPECT(false) << isa_name(gk.isa) << " gemm_s32 m=" << m << " k=" << k << " n=" << n
                            << " zp=" << zp << " at (" << i << "," << j << ")";
            }
      }
    EXPECT(bad == 0);
  });
}

TEST(gemm_s32_driver_max_k_extremes) {
  // K = kMaxK with the largest |a - zp| * |w|: the int32 result is near +-2^31 and exact.
  for_each_kernel([](const GemmKernels& gk) {
    const std::size_t m = 2, k = kMaxK, n = 17;
    for (int c = 0; c < 2; ++c) {
      Problem p = make(m, k, n, c == 0 ? Fill::kMaxPos : Fill::kMaxNeg);
      const int32_t zp = c == 0 ? 0 : 255;
      const auto buf = pack(p, false);
      const PackedView v = view_packed(buf.data(), buf.size(), false);
      std::vector<int32_t> out(m * n);
      gemm_s32_op(gk, v, p.a.data(), AType::kU8, m, k, zp, out.data());
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j)
          EXPECT(out[i * n + j] == dot(p, AType::kU8, zp, i, j))
              << isa_name(gk.isa) << " max-K c=" << c << " (" << i << "," << j << ")";
    }
  });
}

TEST(linear_int8_driver_matches_scalar) {
  const QuantKernels& qk = quant_kernels();
  for_each_kernel([&](const GemmKernels& gk) {
    std::size_t idx = 0, bad = 0;
    for (std::size_t m : kMs)
      for (std::size_t k : kKs) {
        const std::size_t n = kNs[(idx + 2) % 6];
        const bool bias = idx % 2, relu = (idx / 2) % 2;
        ++idx;
        Problem p = make(m, k, n, Fill::kRandom);
        std::vector<float> x(m * k);
        std::uniform_real_distribution<float> ux(-4.0f, 4.0f);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = ux(eptest::rng());
        if (m > 2) std::fill(x.begin() + k, x.begin() + 2 * k, 0.0f);  // a zero row: scale 1
        if (m > 3)
          for (std::size_t i = 0; i < k; ++i) x[2 * k + i] = 1.0f + i;  // all positive
        const auto buf = pack(p, bias);
        const PackedView v = view_packed(buf.data(), buf.size(), false);
        std::vector<float> out(m * n);
        linear_int8_op(gk, qk, v, x.data(), m, k, relu, out.data());
        // The spec, step by step with the scalar references.
        for (std::size_t i = 0; i < m; ++i) {
          float mn, mx;
          ref::minmax(x.data() + i * k, k, &mn, &mx);
          const QParams q = qparams_from_minmax(mn, mx, QDType::kUInt8, false);
          ref::quantize_u8(x.data() + i * k, p.a.data() + i * k, k, 1.0f / q.scale, q.zero_point);
          for (std::size_t j = 0; j < n; ++j) {
            const float want = epilogue(dot(p, AType::kU8, q.zero_point, i, j), q.scale, p.scale[j],
                                        bias ? &p.bias[j] : nullptr, relu);
            if (!same_bits(out[i * n + j], want) && bad++ < 5) {
              EXPECT(false) << isa_name(gk.isa) << " linear_int8 m=" << m << " k=" << k
                            << " n=" << n << " (" << i << "," << j << ") " << out[i * n + j]
                            << " vs " << want;
            }
          }
        }
      }
    EXPECT(bad == 0);
  });
}

TEST(linear_int8_rejects_nan_inf) {
  const GemmKernels& gk = gemm_kernels();
  const Problem p = make(1, 20, 5, Fill::kRandom);
  const auto buf = pack(p, false);
  const PackedView v = view_packed(buf.data(), buf.size(), false);
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(3 * 20, 0.5f), out(3 * 5);
    x[2 * 20 + 7] = bad;
    bool threw = false;
    try {
      linear_int8_op(gk, quant_kernels(), v, x.data(), 3, 20, false, out.data());
    } catch (const std::domain_error&) {
      threw = true;
    }
    EXPECT(threw);
  }
}

TEST(linear_q_driver_matches_scalar) {
  for_each_kernel([](const GemmKernels& gk) {
    std::size_t idx = 0, bad = 0;
    for (std::size_t m : kMs)
      for (std::size_t k : kKs) {
        const std::size_t n = kNs[(idx + 4) % 6];
        const bool bias = idx % 2, relu = (idx / 2) % 2;
        const AType at = (idx / 4) % 2 ? AType::kS8 : AType::kU8;
        const QDType od = (idx / 8) % 2 ? QDType::kInt8 : QDType::kUInt8;
        const int32_t a_zp = at == AType::kS8 ? static_cast<int32_t>(idx % 256) - 128
                                              : static_cast<int32_t>(idx % 256);
        const int32_t out_zp = od == QDType::kInt8 ? static_cast<int32_t>(idx * 7 % 256) - 128
                                                   : static_cast<int32_t>(idx * 7 % 256);
        const float a_scale = 0.02f + 0.001f * static_cast<float>(idx % 13);
        // Small out_scale saturates often, large one rounds many half-way-ish values.
        const float out_scale = (idx % 3 == 0) ? 0.01f : 0.37f * static_cast<float>(1 + idx % 5);
        ++idx;
        const Problem p = make(m, k, n, static_cast<Fill>(idx % 2));
        const auto buf = pack(p, bias);
        const PackedView v = view_packed(buf.data(), buf.size(), false);
        std::vector<uint8_t> out(m * n);
        linear_q_op(gk, v, p.a.data(), at, m, k, a_scale, a_zp, out_scale, out_zp, od, relu,
                    out.data());
        const float inv = 1.0f / out_scale;
        const float lo = static_cast<float>(qmin_of(od) - out_zp);
        const float hi = static_cast<float>(qmax_of(od) - out_zp);
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) {
            const float y = epilogue(dot(p, at, a_zp, i, j), a_scale, p.scale[j],
                                     bias ? &p.bias[j] : nullptr, relu);
            const float c = std::min(std::max(y * inv, lo), hi);
            const int32_t q = static_cast<int32_t>(std::nearbyint(c)) + out_zp;
            const uint8_t want = static_cast<uint8_t>(q);
            if (out[i * n + j] != want && bad++ < 5) {
              EXPECT(false) << isa_name(gk.isa) << " linear_q m=" << m << " k=" << k << " n=" << n
                            << " (" << i << "," << j << ") " << int(out[i * n + j]) << " vs "
                            << int(want);
            }
          }
      }
    EXPECT(bad == 0);
  });
}

TEST(gemm_driver_thread_count_invariant) {
  // Shapes large enough to be split (over N panels, and over M tiles when panels are few).
  const int saved = get_num_threads();
  const QuantKernels& qk = quant_kernels();
  struct S {
    std::size_t m, k, n;
  };
  for (const S s : {S{40, 512, 200}, S{300, 256, 16}, S{3, 2048, 300}}) {
    const Problem p = make(s.m, s.k, s.n, Fill::kRandom);
    const auto buf = pack(p, true);
    const PackedView v = view_packed(buf.data(), buf.size(), false);
    std::vector<float> x(s.m * s.k);
    std::uniform_real_distribution<float> ux(-1.0f, 1.0f);
    for (auto& e : x) e = ux(eptest::rng());
    for_each_kernel([&](const GemmKernels& gk) {
      std::vector<int32_t> o1(s.m * s.n), o2(s.m * s.n);
      std::vector<float> f1(s.m * s.n), f2(s.m * s.n);
      set_num_threads(1);
      gemm_s32_op(gk, v, p.a.data(), AType::kU8, s.m, s.k, 7, o1.data());
      linear_int8_op(gk, qk, v, x.data(), s.m, s.k, false, f1.data());
      for (int t : {2, 3}) {
        set_num_threads(t);
        gemm_s32_op(gk, v, p.a.data(), AType::kU8, s.m, s.k, 7, o2.data());
        linear_int8_op(gk, qk, v, x.data(), s.m, s.k, false, f2.data());
        EXPECT(o1 == o2) << isa_name(gk.isa) << " gemm_s32 differs at " << t << " threads";
        EXPECT(std::memcmp(f1.data(), f2.data(), f1.size() * 4) == 0)
            << isa_name(gk.isa) << " linear_int8 differs at " << t << " threads";
      }
      bool ok = true;
      for (std::size_t i = 0; i < s.m && ok; ++i)
        for (std::size_t j = 0; j < s.n && ok; ++j)
          ok = o1[i * s.n + j] == dot(p, AType::kU8, 7, i, j);
      EXPECT(ok) << isa_name(gk.isa) << " threaded gemm_s32 vs scalar";
    });
  }
  set_num_threads(saved);
}

TEST(gemm_epilogues_match_reference) {
  // Every epilogue table against the reference on random tiles, every tile height and partial
  // width, bias on/off, relu on/off, values whose products overflow to inf (so NaN = 0 * inf
  // and -0.0 reach ReLU), and q8 clamping both ways for int8 and uint8 ranges.
  const GemmEpilogues& ref = gemm_epilogue_list().front();
  auto& g = eptest::rng();
  std::size_t bad = 0;
  for (const GemmEpilogues& ep : gemm_epilogue_list()) {
    if (!isa_supported_by_cpu(ep.isa)) continue;
    for (int trial = 0; trial < 200; ++trial) {
      const std::size_t mr = 1 + trial % 16, nc = 1 + (trial * 7) % 16, ldo = 19;
      std::vector<int32_t> tile(mr * 16), colsum(16), zpoff(mr);
      std::vector<float> ws(16), bias(16), rs(mr);
      for (auto& v : tile) v = static_cast<int32_t>(g()) >> (trial % 3 == 0 ? 0 : 12);
      for (auto& v : colsum) v = static_cast<int32_t>(g() % 65536) - 32768;
      for (auto& v : zpoff) v = static_cast<int32_t>(g() % 384) - 128;
      std::uniform_real_distribution<float> u(1e-4f, 1e-2f), ub(-50.0f, 50.0f);
      for (auto& v : ws) v = u(g);
      for (auto& v : bias) v = ub(g);
      for (auto& v : rs) v = u(g);
      if (trial % 10 == 0) {  // inf products: NaN (0 * inf) and +-inf outputs
        rs[0] = 3e38f;
        ws[1] = 3e38f;
        ws[2] = 3e38f;
        // acc == 0 at (0, 1): 0 * inf = NaN; (0, 2) is +-inf.
        tile[1] = static_cast<int32_t>(static_cast<uint32_t>(zpoff[0]) *
                                       static_cast<uint32_t>(colsum[1]));
      }
      if (trial % 10 == 1) tile[0] = static_cast<int32_t>(zpoff[0] * colsum[0]);  // acc == 0
      TileEpilogueArgs e{};
      e.ldt = 16;
      e.colsum = colsum.data();
      e.w_scale = ws.data();
      e.bias = trial % 2 ? bias.data() : nullptr;
      e.relu = (trial / 2) % 2;
      e.row_zpoff = zpoff.data();
      e.row_scale = rs.data();
      e.zpoff = zpoff[0];
      e.a_scale = 0.01f * static_cast<float>(1 + trial % 5);
      const bool s8 = trial % 3 == 0;
      e.out_zp = s8 ? static_cast<int32_t>(g() % 256) - 128 : static_cast<int32_t>(g() % 256);
      e.inv = 1.0f / (0.05f * static_cast<float>(1 + trial % 7));
      e.lo = static_cast<float>((s8 ? -128 : 0) - e.out_zp);
      e.hi = static_cast<float>((s8 ? 127 : 255) - e.out_zp);
      std::vector<int32_t> s_a(mr * ldo, 7), s_b(mr * ldo, 7);
      std::vector<float> f_a(mr * ldo, 7.0f), f_b(mr * ldo, 7.0f);
      std::vector<uint8_t> q_a(mr * ldo, 7), q_b(mr * ldo, 7);
      ref.s32(tile.data(), mr, nc, e, s_a.data(), ldo);
      ep.s32(tile.data(), mr, nc, e, s_b.data(), ldo);
      ref.f32(tile.data(), mr, nc, e, f_a.data(), ldo);
      ep.f32(tile.data(), mr, nc, e, f_b.data(), ldo);
      if (!(trial % 10 == 0)) {  // q8 requires finite scale products (linear_q checks)
        ref.q8(tile.data(), mr, nc, e, q_a.data(), ldo);
        ep.q8(tile.data(), mr, nc, e, q_b.data(), ldo);
      }
      if (trial % 10 == 0 && nc > 2) {
        EXPECT(std::isnan(f_a[1]) && (std::isinf(f_a[2]) || (e.relu && f_a[2] == 0.0f)))
            << "special values did not reach the epilogue: " << f_a[1] << " " << f_a[2];
      }
      const bool ok =
          s_a == s_b && q_a == q_b && std::memcmp(f_a.data(), f_b.data(), f_a.size() * 4) == 0;
      if (!ok && bad++ < 5) {
        EXPECT(false) << isa_name(ep.isa) << " epilogue trial " << trial << " mr=" << mr
                      << " nc=" << nc << " s32 " << (s_a == s_b) << " q8 " << (q_a == q_b);
      }
    }
  }
  EXPECT(bad == 0);
}

TEST(gemm_wide_kernels_match_reference) {
  // Two-panel kernels (gemm_wide.h) against two calls of the reference one-panel kernel: every
  // tile height, K from one granule to 1000+, random and extreme values, row stride != kp.
  const GemmKernels& ref = gemm_kernel_list().front();
  auto& g = eptest::rng();
  for (const GemmWideKernels& wk : gemm_wide_kernel_list()) {
    if (!isa_supported_by_cpu(wk.isa)) continue;
    std::cout << "  wide kernel tested: " << wk.name << "\n";
    std::size_t bad = 0;
    for (std::size_t kp : {8, 16, 24, 64, 72, 136, 1032})
      for (std::size_t mr = 1; mr <= wk.max_mr; ++mr)
        for (int fill = 0; fill < 3; ++fill) {
          const std::size_t lda = kp + 4 * (mr % 3);
          std::vector<uint8_t> a(mr * lda);
          std::vector<int8_t> b(2 * kNR * kp);
          for (auto& v : a) v = fill == 0 ? static_cast<uint8_t>(g()) : (fill == 1 ? 255 : 0);
          for (auto& v : b)
            v = fill == 0 ? static_cast<int8_t>(g()) : static_cast<int8_t>(fill == 1 ? -128 : 127);
          // kS8 kernels read a_u8 - 128; the reference reads a_u8, so compare through colsums.
          std::vector<int32_t> want(mr * 2 * kNR), got(mr * 2 * kNR, 0x5A5A5A5A);
          ref.ukernel(mr, kp, a.data(), lda, b.data(), want.data(), 2 * kNR);
          ref.ukernel(mr, kp, a.data(), lda, b.data() + kNR * kp, want.data() + kNR, 2 * kNR);
          if (wk.a_format == AFormat::kS8) {
            for (std::size_t n = 0; n < 2 * kNR; ++n) {
              int32_t cs = 0;
              const int8_t* pb = b.data() + (n / kNR) * kNR * kp;
              for (std::size_t k = 0; k < kp; ++k) cs += pb[(k / 4) * 64 + (n % kNR) * 4 + k % 4];
              for (std::size_t r = 0; r < mr; ++r) want[r * 2 * kNR + n] -= 128 * cs;
            }
            for (auto& v : a) v = static_cast<uint8_t>(v ^ 0x80);
          }
          wk.ukernel2(mr, kp, a.data(), lda, b.data(), got.data(), 2 * kNR);
          if (got != want && bad++ < 5) {
            EXPECT(false) << isa_name(wk.isa) << " wide kernel mr=" << mr << " kp=" << kp
                          << " fill=" << fill;
          }
        }
    EXPECT(bad == 0);
  }
}

TEST(gemm_wide_kernels_in_a_session_match_reference) {
  // Inside a session (gemm_wide.h) a kernel may keep state between calls (AMX: its tile
  // configuration). Calls with changing tile heights (reconfiguration), heights below the AMX
  // minimum (VNNI fallback inside the session), K tails, and a call after the session ends
  // must all equal the reference.
  const GemmKernels& ref = gemm_kernel_list().front();
  auto& g = eptest::rng();
  const std::size_t heights[] = {16, 7, 7, 16, 4, 15, 3, 1, 16, 12};
  for (const GemmWideKernels& wk : gemm_wide_kernel_list()) {
    if (!isa_supported_by_cpu(wk.isa) || wk.a_format != AFormat::kU8) continue;
    std::size_t bad = 0;
    auto check = [&](std::size_t mr, std::size_t kp) {
      mr = std::min(mr, wk.max_mr);
      std::vector<uint8_t> a(mr * kp);
      std::vector<int8_t> b(2 * kNR * kp);
      for (auto& v : a) v = static_cast<uint8_t>(g());
      for (auto& v : b) v = static_cast<int8_t>(g());
      std::vector<int32_t> want(mr * 2 * kNR), got(mr * 2 * kNR, 0x5A5A5A5A);
      ref.ukernel(mr, kp, a.data(), kp, b.data(), want.data(), 2 * kNR);
      ref.ukernel(mr, kp, a.data(), kp, b.data() + kNR * kp, want.data() + kNR, 2 * kNR);
      wk.ukernel2(mr, kp, a.data(), kp, b.data(), got.data(), 2 * kNR);
      if (got != want && bad++ < 5) {
        EXPECT(false) << wk.name << " in session: mr=" << mr << " kp=" << kp;
      }
    };
    {
      const GemmWideSession session(&wk);
      for (std::size_t i = 0; i < sizeof(heights) / sizeof(heights[0]); ++i)
        check(heights[i], i % 3 == 0 ? 136 : 256);
    }
    check(16, 192);  // after the session: configures and releases on its own again
    check(9, 64);
    EXPECT(bad == 0);
  }
}
