// The GEMM driver: prepares A in the micro-kernel's format, walks (M tile, N panel) blocks, calls
// the dispatched micro-kernel into a small int32 tile and applies a fused epilogue (zero-point
// correction, then int32 / fp32 / requantized output). Arch-neutral C++: every ISA goes through
// the same code, only the micro-kernel pointer differs.
//
// Blocking: the outer loop walks chunks of N panels sized to stay in L2 (~512 KiB), inside it the
// M tiles (max_mr rows, whose A rows stay in L1 across the chunk), inside that the panels. Large
// M is processed in row chunks (A scratch bounded at ~1 MiB), each quantized then multiplied.
// Threads: N panels are split evenly over the pool when there are enough of them, M tiles
// otherwise; tiny problems stay on the caller. Each output is produced by exactly one micro-kernel
// call over the whole K, so results do not depend on the thread count or split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "edgepack/gemm_ops.h"
#include "edgepack/parallel.h"

namespace edgepack {
namespace {

constexpr std::size_t kTileMaxMr = 32;
constexpr std::size_t kL2ChunkBytes = 512 * 1024;     // B panels per chunk
constexpr std::size_t kAChunkBytes = 1024 * 1024;     // A rows prepared at once
constexpr std::size_t kMinParallelMacs = 1u << 18;    // below: one thread
constexpr std::size_t kQuantGrainElems = 1u << 15;

// Per-thread scratch, grown on demand and reused: no allocation in steady state.
struct Scratch {
  std::vector<uint8_t> a;
  std::vector<float> row_scale;
  std::vector<int32_t> row_zpoff;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// Offset the kernel's A encoding subtracts from a_u8 (see gemm.h).
int32_t format_offset(const GemmKernels& gk) { return gk.a_format == AFormat::kS8 ? 128 : 0; }

// Runs the block loops over rows [0, m) of a (already in the kernel's format, row stride lda)
// calling epi(row0, mr, n0, ncols, tile) for every (M tile, panel). Rows are absolute to epi via
// row_base.
template <class Epi>
void compute_block(const GemmKernels& gk, const PackedView& p, const uint8_t* a, std::size_t lda,
                   std::size_t row_base, std::size_t m, const Epi& epi) {
  const std::size_t mr_max = std::min(gk.max_mr, kTileMaxMr);
  const std::size_t panels = p.np / kNR;
  const std::size_t mtiles = (m + mr_max - 1) / mr_max;
  const std::size_t panel_bytes = kNR * p.kp;
  const std::size_t chunk = std::max<std::size_t>(1, kL2ChunkBytes / panel_bytes);

  auto run = [&](std::size_t t0, std::size_t t1, std::size_t q0, std::size_t q1) {
    alignas(64) int32_t tile[kTileMaxMr * kNR];
    for (std::size_t c0 = q0; c0 < q1; c0 += chunk) {
      const std::size_t c1 = std::min(q1, c0 + chunk);
      for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t r0 = t * mr_max, mr = std::min(mr_max, m - r0);
        const uint8_t* at = a + r0 * lda;
        for (std::size_t q = c0; q < c1; ++q) {
          gk.ukernel(mr, p.kp, at, lda, p.panels + q * panel_bytes, tile, kNR);
          const std::size_t n0 = q * kNR;
          epi(row_base + r0, mr, n0, std::min(kNR, p.n - n0), tile);
        }
      }
    }
  };

  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t macs = m * p.np * p.kp;
  if (threads <= 1 || macs < kMinParallelMacs) {
    run(0, mtiles, 0, panels);
  } else if (panels >= 2 * threads || panels >= mtiles) {
    parallel_for(panels, 1, [&](std::size_t q0, std::size_t q1) { run(0, mtiles, q0, q1); });
  } else {
    parallel_for(mtiles, 1, [&](std::size_t t0, std::size_t t1) { run(t0, t1, 0, panels); });
  }
}

// Rows per A chunk: a multiple of the tile height, about kAChunkBytes of A.
std::size_t rows_per_chunk(const GemmKernels& gk, std::size_t kp) {
  const std::size_t mr = std::min(gk.max_mr, kTileMaxMr);
  return std::max(mr, kAChunkBytes / kp / mr * mr);
}

// Copies/converts given int8 or uint8 rows into the kernel's format (xor 0x80 flips between
// a_u8 and a_u8 - 128), zero-padding K..Kp. Returns the pointer and stride the kernel reads:
// the caller's own buffer when no conversion or padding is needed.
const uint8_t* prepare_a(const GemmKernels& gk, const PackedView& p, const uint8_t* a, AType at,
                         std::size_t m, std::size_t lda, std::size_t* lda_out) {
  const bool flip = (at == AType::kS8) != (gk.a_format == AFormat::kS8);
  if (!flip && p.k == p.kp) {
    *lda_out = lda;
    return a;
  }
  Scratch& s = scratch();
  if (s.a.size() < m * p.kp) s.a.resize(m * p.kp);
  uint8_t* dst = s.a.data();
  const std::size_t k = p.k, kp = p.kp;
  const std::size_t grain = std::max<std::size_t>(1, kQuantGrainElems / kp);
  parallel_for(m, grain, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      const uint8_t* src = a + r * lda;
      uint8_t* d = dst + r * kp;
      if (flip)
        for (std::size_t i = 0; i < k; ++i) d[i] = static_cast<uint8_t>(src[i] ^ 0x80u);
      else
        std::memcpy(d, src, k);
      std::memset(d + k, 0, kp - k);
    }
  });
  *lda_out = kp;
  return dst;
}

// acc = raw - zpoff * colsum in wrap-around int32 arithmetic: exact when the true sum fits.
inline int32_t correct(int32_t raw, int32_t zpoff, int32_t colsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(raw) -
                              static_cast<uint32_t>(zpoff) * static_cast<uint32_t>(colsum));
}

// np.maximum(y, 0) semantics: NaN stays NaN, -0.0 becomes +0.0.
inline float relu_f(float y) { return (y > 0.0f || y != y) ? y : 0.0f; }

struct EpiS32 {
  int32_t* out;
  std::size_t ldo;
  const int32_t* colsum;
  int32_t zpoff;
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile) const {
    for (std::size_t r = 0; r < mr; ++r) {
      int32_t* o = out + (r0 + r) * ldo + n0;
      const int32_t* t = tile + r * kNR;
      const int32_t* cs = colsum + n0;
      if (nc == kNR) {
        for (std::size_t j = 0; j < kNR; ++j) o[j] = correct(t[j], zpoff, cs[j]);
      } else {
        for (std::size_t j = 0; j < nc; ++j) o[j] = correct(t[j], zpoff, cs[j]);
      }
    }
  }
};

// y = float(acc) * float(a_scale[m] * w_scale[n]) (+ bias) (relu): reference.py epilogue_ref.
template <bool kBias, bool kRelu>
inline void dequant_row(const int32_t* t, const int32_t* cs, int32_t zpoff, float as,
                        const float* ws, const float* bias, float* o, std::size_t nc) {
  for (std::size_t j = 0; j < nc; ++j) {
    const float mult = as * ws[j];
    float y = static_cast<float>(correct(t[j], zpoff, cs[j])) * mult;
    if (kBias) y = y + bias[j];
    if (kRelu) y = relu_f(y);
    o[j] = y;
  }
}

template <bool kBias, bool kRelu>
struct EpiF32 {
  float* out;
  std::size_t ldo;
  const PackedView* p;
  const float* row_scale;   // indexed by absolute row
  const int32_t* row_zpoff;  // indexed by absolute row
  std::size_t row_index_base;  // subtract from the absolute row to index row_scale/zpoff
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile) const {
    for (std::size_t r = 0; r < mr; ++r) {
      const std::size_t row = r0 + r, ri = row - row_index_base;
      float* o = out + row * ldo + n0;
      if (nc == kNR)
        dequant_row<kBias, kRelu>(tile + r * kNR, p->colsum + n0, row_zpoff[ri], row_scale[ri],
                                  p->scale + n0, p->bias + n0, o, kNR);
      else
        dequant_row<kBias, kRelu>(tile + r * kNR, p->colsum + n0, row_zpoff[ri], row_scale[ri],
                                  p->scale + n0, p->bias + n0, o, nc);
    }
  }
};

// Requantization: reference.py quantize_ref applied to the fp32 epilogue result.
template <bool kBias, bool kRelu, class T>
inline void requant_row(const int32_t* t, const int32_t* cs, int32_t zpoff, float as,
                        const float* ws, const float* bias, float inv, float lo, float hi,
                        int32_t zp, T* o, std::size_t nc) {
  for (std::size_t j = 0; j < nc; ++j) {
    const float mult = as * ws[j];
    float y = static_cast<float>(correct(t[j], zpoff, cs[j])) * mult;
    if (kBias) y = y + bias[j];
    if (kRelu) y = relu_f(y);
    float v = y * inv;
    v = std::min(std::max(v, lo), hi);
    // Round half to even: |v| <= 383 here, so adding and removing 1.5 * 2^23 rounds exactly
    // like rint under the default rounding mode, and vectorizes.
    const float r = (v + 12582912.0f) - 12582912.0f;
    o[j] = static_cast<T>(static_cast<int32_t>(r) + zp);
  }
}

template <bool kBias, bool kRelu, class T>
struct EpiQ {
  T* out;
  std::size_t ldo;
  const PackedView* p;
  int32_t zpoff;
  float a_scale, inv, lo, hi;
  int32_t out_zp;
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile) const {
    for (std::size_t r = 0; r < mr; ++r) {
      T* o = out + (r0 + r) * ldo + n0;
      if (nc == kNR)
        requant_row<kBias, kRelu, T>(tile + r * kNR, p->colsum + n0, zpoff, a_scale,
                                     p->scale + n0, p->bias + n0, inv, lo, hi, out_zp, o, kNR);
      else
        requant_row<kBias, kRelu, T>(tile + r * kNR, p->colsum + n0, zpoff, a_scale,
                                     p->scale + n0, p->bias + n0, inv, lo, hi, out_zp, o, nc);
    }
  }
};

void check_kernel(const GemmKernels& gk) {
  if (gk.max_mr == 0 || gk.max_mr > kTileMaxMr)
    throw std::logic_error("GEMM micro-kernel declares an unsupported max_mr");
}

}  // namespace

void gemm_s32_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at,
                 std::size_t m, std::size_t lda, int32_t a_zp, int32_t* out) {
  check_kernel(gk);
  if (m == 0) return;
  const int32_t zp_u8 = at == AType::kS8 ? a_zp + 128 : a_zp;
  const EpiS32 epi{out, p.n, p.colsum, zp_u8 - format_offset(gk)};
  const std::size_t chunk = rows_per_chunk(gk, p.kp);
  const auto* ab = static_cast<const uint8_t*>(a);
  for (std::size_t r0 = 0; r0 < m; r0 += chunk) {
    const std::size_t rows = std::min(chunk, m - r0);
    std::size_t ld;
    const uint8_t* ak = prepare_a(gk, p, ab + r0 * lda, at, rows, lda, &ld);
    compute_block(gk, p, ak, ld, r0, rows, epi);
  }
}

namespace {

template <class Epi>
void linear_int8_run(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                     const float* x, std::size_t m, std::size_t ldx, Epi epi) {
  const std::size_t chunk = rows_per_chunk(gk, p.kp);
  const std::size_t k = p.k, kp = p.kp;
  const bool s8 = gk.a_format == AFormat::kS8;
  const int32_t off = format_offset(gk);
  Scratch& s = scratch();
  const std::size_t rows_max = std::min(chunk, m);
  if (s.a.size() < rows_max * kp) s.a.resize(rows_max * kp);
  if (s.row_scale.size() < rows_max) {
    s.row_scale.resize(rows_max);
    s.row_zpoff.resize(rows_max);
  }
  uint8_t* abuf = s.a.data();
  float* rs = s.row_scale.data();
  int32_t* rz = s.row_zpoff.data();
  epi.row_scale = rs;
  epi.row_zpoff = rz;
  for (std::size_t r0 = 0; r0 < m; r0 += chunk) {
    const std::size_t rows = std::min(chunk, m - r0);
    std::atomic<int> bad{0};
    const std::size_t grain = std::max<std::size_t>(1, kQuantGrainElems / kp);
    // Dynamic per-row quantization straight into the kernel's A format: quantize_s8 with zero
    // point zp - 128 yields exactly a_u8 - 128 (same float clamp bounds, shifted by 128).
    parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        const float* xr = x + (r0 + r) * ldx;
        float mn, mx;
        if (qk.minmax(xr, k, &mn, &mx)) {
          bad = 1;
          return;
        }
        if (!std::isfinite(mn) || !std::isfinite(mx)) {
          bad = 2;
          return;
        }
        const QParams q = qparams_from_minmax(mn, mx, QDType::kUInt8, false);
        uint8_t* d = abuf + r * kp;
        const float inv = 1.0f / q.scale;
        if (s8)
          qk.quantize_s8(xr, d, k, inv, q.zero_point - 128);
        else
          qk.quantize_u8(xr, d, k, inv, q.zero_point);
        std::memset(d + k, 0, kp - k);
        rs[r] = q.scale;
        rz[r] = q.zero_point - off;
      }
    });
    if (bad == 1) throw std::domain_error("x contains NaN");
    if (bad == 2) throw std::domain_error("x contains inf");
    epi.row_index_base = r0;
    compute_block(gk, p, abuf, kp, r0, rows, epi);
  }
}

template <bool kBias, bool kRelu>
void linear_int8_t(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                   const float* x, std::size_t m, std::size_t ldx, float* out) {
  EpiF32<kBias, kRelu> epi{out, p.n, &p, nullptr, nullptr, 0};
  linear_int8_run(gk, qk, p, x, m, ldx, epi);
}

template <bool kBias, bool kRelu, class T>
void linear_q_t(const GemmKernels& gk, const PackedView& p, const uint8_t* a, std::size_t lda,
                std::size_t r0, std::size_t rows, int32_t zpoff, float a_scale, float out_scale,
                int32_t out_zp, int32_t qmin, int32_t qmax, T* out) {
  const float inv = 1.0f / out_scale;
  const EpiQ<kBias, kRelu, T> epi{out,
                                  p.n,
                                  &p,
                                  zpoff,
                                  a_scale,
                                  inv,
                                  static_cast<float>(qmin - out_zp),
                                  static_cast<float>(qmax - out_zp),
                                  out_zp};
  compute_block(gk, p, a, lda, r0, rows, epi);
}

}  // namespace

void linear_int8_op(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                    const float* x, std::size_t m, std::size_t ldx, bool relu, float* out) {
  check_kernel(gk);
  if (m == 0) return;
  if (p.has_bias) {
    if (relu)
      linear_int8_t<true, true>(gk, qk, p, x, m, ldx, out);
    else
      linear_int8_t<true, false>(gk, qk, p, x, m, ldx, out);
  } else {
    if (relu)
      linear_int8_t<false, true>(gk, qk, p, x, m, ldx, out);
    else
      linear_int8_t<false, false>(gk, qk, p, x, m, ldx, out);
  }
}

void linear_q_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at,
                 std::size_t m, std::size_t lda, float a_scale, int32_t a_zp, float out_scale,
                 int32_t out_zp, QDType out_dtype, bool relu, void* out) {
  check_kernel(gk);
  if (m == 0) return;
  const int32_t zp_u8 = at == AType::kS8 ? a_zp + 128 : a_zp;
  const int32_t zpoff = zp_u8 - format_offset(gk);
  const std::size_t chunk = rows_per_chunk(gk, p.kp);
  const auto* ab = static_cast<const uint8_t*>(a);
  const int32_t qmin = qmin_of(out_dtype), qmax = qmax_of(out_dtype);
  for (std::size_t r0 = 0; r0 < m; r0 += chunk) {
    const std::size_t rows = std::min(chunk, m - r0);
    std::size_t ld;
    const uint8_t* ak = prepare_a(gk, p, ab + r0 * lda, at, rows, lda, &ld);
    // Dispatch on (bias, relu, dtype) once per chunk so the inner loops are branch-free.
    auto go = [&](auto bias_tag, auto relu_tag) {
      constexpr bool kB = decltype(bias_tag)::value, kR = decltype(relu_tag)::value;
      if (out_dtype == QDType::kInt8)
        linear_q_t<kB, kR, int8_t>(gk, p, ak, ld, r0, rows, zpoff, a_scale, out_scale, out_zp,
                                   qmin, qmax, static_cast<int8_t*>(out));
      else
        linear_q_t<kB, kR, uint8_t>(gk, p, ak, ld, r0, rows, zpoff, a_scale, out_scale, out_zp,
                                    qmin, qmax, static_cast<uint8_t*>(out));
    };
    using T_ = std::true_type;
    using F_ = std::false_type;
    if (p.has_bias) {
      if (relu) go(T_{}, T_{}); else go(T_{}, F_{});
    } else {
      if (relu) go(F_{}, T_{}); else go(F_{}, F_{});
    }
  }
}

}  // namespace edgepack
