// The GEMM driver: prepares A in the micro-kernel's format, walks (M tile, N panel) blocks, calls
// the dispatched micro-kernel into a small int32 tile and applies the dispatched per-tile
// epilogue (gemm_epilogue.h: zero-point correction, then int32 / fp32 / requantized output).
// Arch-neutral C++: every ISA goes through the same code, only the kernel pointers differ. When a
// two-panel kernel matches the dispatched one (gemm_wide.h: AVX-512 VNNI 8x32, AMX 16x32) panels
// go in pairs.
//
// Blocking: the outer loop walks chunks of N panels sized to stay in L2 (~512 KiB), inside it the
// M tiles (whose A rows stay in L1 across the chunk), inside that the panels. Large M is
// processed in row chunks (A scratch bounded at ~1 MiB), each quantized then multiplied. Prepared
// A rows are 64-byte aligned with a cache-line multiple stride (see a_stride()).
// Threads: N panel pairs are split evenly over the pool when there are enough of them, M tiles
// otherwise; tiny problems stay on the caller. Each output is produced by exactly one kernel call
// over the whole K, so results do not depend on the thread count or split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "edgepack/epilogue.h"
#include "edgepack/gemm_ops.h"
#include "edgepack/parallel.h"
#include "gemm/gemm_epilogue.h"
#include "gemm/gemm_wide.h"

namespace edgepack {
namespace {

constexpr std::size_t kTileMaxMr = 32;
constexpr std::size_t kL2ChunkBytes = 512 * 1024;   // B panels per chunk
constexpr std::size_t kAChunkBytes = 1024 * 1024;   // A rows prepared at once
constexpr std::size_t kMinParallelMacs = 1u << 23;  // below (~15 us of VNNI work): one thread
constexpr std::size_t kQuantGrainElems = 1u << 15;

// Per-thread scratch, grown on demand and reused: no allocation in steady state.
struct Scratch {
  std::vector<uint8_t> a;  // A rows; use a_buffer() for a 64-byte aligned pointer
  std::vector<float> row_scale;
  std::vector<int32_t> row_zpoff;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// 64-byte aligned A scratch of at least `bytes`: rows whose stride is a multiple of 64 then
// start on cache lines, so a 64-byte tile row or zmm group read never straddles two lines.
uint8_t* a_buffer(Scratch& s, std::size_t bytes) {
  if (s.a.size() < bytes + 64) s.a.resize(bytes + 64);
  const auto addr = reinterpret_cast<std::uintptr_t>(s.a.data());
  return s.a.data() + ((64 - addr % 64) % 64);
}

// Runs the block loops over rows [0, m) of a (already in the kernel's format, row stride lda)
// calling epi(row0, mr, n0, ncols, tile, ldt) for every (M tile, panel). Rows are absolute to
// epi via row_base. With a two-panel kernel (gemm_wide.h) panels go in pairs, the odd last one
// of a range through the one-panel kernel.
template <class Epi>
void compute_block(const GemmKernels& gk, const PackedView& p, const uint8_t* a, std::size_t lda,
                   std::size_t row_base, std::size_t m, const Epi& epi) {
  const GemmWideKernels* wide = gemm_wide_for(gk);
  const std::size_t mr_max = std::min(wide ? wide->max_mr : gk.max_mr, kTileMaxMr);
  const std::size_t panels = p.np / kNR;
  const std::size_t mtiles = (m + mr_max - 1) / mr_max;
  const std::size_t panel_bytes = kNR * p.kp;
  const std::size_t chunk = std::max<std::size_t>(2, kL2ChunkBytes / panel_bytes) & ~std::size_t{1};

  auto run = [&](std::size_t t0, std::size_t t1, std::size_t q0, std::size_t q1) {
    const GemmWideSession session(wide);  // per task, on the thread that runs it
    alignas(64) int32_t tile[kTileMaxMr * 2 * kNR];
    for (std::size_t c0 = q0; c0 < q1; c0 += chunk) {
      const std::size_t c1 = std::min(q1, c0 + chunk);
      for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t r0 = t * mr_max, mr = std::min(mr_max, m - r0);
        const uint8_t* at = a + r0 * lda;
        std::size_t q = c0;
        if (wide) {
          for (; q + 2 <= c1; q += 2) {
            wide->ukernel2(mr, p.kp, at, lda, p.panels + q * panel_bytes, tile, 2 * kNR);
            const std::size_t n0 = q * kNR;
            epi(row_base + r0, mr, n0, std::min(kNR, p.n - n0), tile, 2 * kNR);
            const std::size_t n1 = n0 + kNR;
            if (n1 < p.n) epi(row_base + r0, mr, n1, std::min(kNR, p.n - n1), tile + kNR, 2 * kNR);
          }
        }
        for (; q < c1; ++q) {
          gk.ukernel(mr, p.kp, at, lda, p.panels + q * panel_bytes, tile, kNR);
          const std::size_t n0 = q * kNR;
          epi(row_base + r0, mr, n0, std::min(kNR, p.n - n0), tile, kNR);
        }
      }
    }
  };

  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t macs = m * p.np * p.kp;
  if (threads <= 1 || macs < kMinParallelMacs) {
    run(0, mtiles, 0, panels);
  } else if (panels >= 4 * threads || panels >= 2 * mtiles) {
    // Split N in panel pairs so a two-panel kernel never straddles two tasks.
    const std::size_t pairs = (panels + 1) / 2;
    parallel_for(pairs, 1, [&](std::size_t b, std::size_t e) {
      run(0, mtiles, 2 * b, std::min(panels, 2 * e));
    });
  } else {
    parallel_for(mtiles, 1, [&](std::size_t t0, std::size_t t1) { run(t0, t1, 0, panels); });
  }
}

// Row stride of prepared A: Kp rounded up to whole cache lines (tile rows and groups never
// straddle two lines), plus one more line when that is a multiple of 1 KiB, so the rows a
// micro-kernel reads do not all map to the same few L1 sets (at Kp = 4096 all 16 rows would
// share one set of a 12-way L1 and evict each other on every group).
std::size_t a_stride(std::size_t kp) {
  const std::size_t ld = (kp + 63) / 64 * 64;
  return ld % 1024 == 0 ? ld + 64 : ld;
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
  // The caller's rows are used in place when they already look like prepared rows.
  if (!flip && p.k == p.kp && lda == a_stride(p.kp) &&
      reinterpret_cast<std::uintptr_t>(a) % 64 == 0) {
    *lda_out = lda;
    return a;
  }
  Scratch& s = scratch();
  const std::size_t k = p.k, kp = p.kp, ld = a_stride(kp);
  uint8_t* dst = a_buffer(s, m * ld);
  const std::size_t grain = std::max<std::size_t>(1, kQuantGrainElems / kp);
  parallel_for(m, grain, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      const uint8_t* src = a + r * lda;
      uint8_t* d = dst + r * ld;
      if (flip)
        for (std::size_t i = 0; i < k; ++i) d[i] = static_cast<uint8_t>(src[i] ^ 0x80u);
      else
        std::memcpy(d, src, k);
      std::memset(d + k, 0, kp - k);
    }
  });
  *lda_out = ld;
  return dst;
}

// Output writers: apply the dispatched per-tile epilogue (gemm_epilogue.h) to each tile.
struct EpiS32 {
  const GemmEpilogues* ep;
  int32_t* out;
  std::size_t ldo;
  const PackedView* p;
  int32_t zpoff;
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile, std::size_t ldt) const {
    TileEpilogueArgs e{};
    e.ldt = ldt;
    e.colsum = p->colsum + n0;
    e.zpoff = zpoff;
    ep->s32(tile, mr, nc, e, out + r0 * ldo + n0, ldo);
  }
};

struct EpiF32 {
  const GemmEpilogues* ep;
  float* out;
  std::size_t ldo;
  const PackedView* p;
  bool relu;
  const float* row_scale;    // indexed by row - row_index_base
  const int32_t* row_zpoff;  // indexed by row - row_index_base
  std::size_t row_index_base;
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile, std::size_t ldt) const {
    TileEpilogueArgs e{};
    e.ldt = ldt;
    e.colsum = p->colsum + n0;
    e.w_scale = p->scale + n0;
    e.bias = p->has_bias ? p->bias + n0 : nullptr;
    e.relu = relu;
    e.row_zpoff = row_zpoff + (r0 - row_index_base);
    e.row_scale = row_scale + (r0 - row_index_base);
    ep->f32(tile, mr, nc, e, out + r0 * ldo + n0, ldo);
  }
};

struct EpiQ8 {
  const GemmEpilogues* ep;
  uint8_t* out;
  std::size_t ldo;
  const PackedView* p;
  TileEpilogueArgs base;  // uniform fields filled once
  void operator()(std::size_t r0, std::size_t mr, std::size_t n0, std::size_t nc,
                  const int32_t* tile, std::size_t ldt) const {
    TileEpilogueArgs e = base;
    e.ldt = ldt;
    e.colsum = p->colsum + n0;
    e.w_scale = p->scale + n0;
    e.bias = p->has_bias ? p->bias + n0 : nullptr;
    ep->q8(tile, mr, nc, e, out + r0 * ldo + n0, ldo);
  }
};

void check_kernel(const GemmKernels& gk) {
  if (gk.max_mr == 0 || gk.max_mr > kTileMaxMr)
    throw std::logic_error("GEMM micro-kernel declares an unsupported max_mr");
}

// The GEMM on already quantized rows a[m] (row stride lda, type at): row chunks of about
// kAChunkBytes, each brought into the kernel's format (prepare_a) and multiplied.
template <class Epi>
void run_quantized(const GemmKernels& gk, const PackedView& p, const uint8_t* a, AType at,
                   std::size_t m, std::size_t lda, const Epi& epi) {
  const std::size_t chunk = rows_per_chunk(gk, p.kp);
  for (std::size_t r0 = 0; r0 < m; r0 += chunk) {
    const std::size_t rows = std::min(chunk, m - r0);
    std::size_t ld;
    const uint8_t* ak = prepare_a(gk, p, a + r0 * lda, at, rows, lda, &ld);
    compute_block(gk, p, ak, ld, r0, rows, epi);
  }
}

}  // namespace

void gemm_s32_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at, std::size_t m,
                 std::size_t lda, int32_t a_zp, int32_t* out) {
  check_kernel(gk);
  if (m == 0) return;
  const int32_t zp_u8 = at == AType::kS8 ? a_zp + 128 : a_zp;
  const EpiS32 epi{&gemm_epilogues(), out, p.n, &p, zp_offset(gk.a_format, zp_u8)};
  run_quantized(gk, p, static_cast<const uint8_t*>(a), at, m, lda, epi);
}

namespace {

void linear_int8_run(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                     const float* x, std::size_t m, std::size_t ldx, EpiF32 epi) {
  const std::size_t chunk = rows_per_chunk(gk, p.kp);
  const std::size_t k = p.k, kp = p.kp, ld = a_stride(kp);
  const bool s8 = gk.a_format == AFormat::kS8;
  Scratch& s = scratch();
  const std::size_t rows_max = std::min(chunk, m);
  uint8_t* abuf = a_buffer(s, rows_max * ld);
  if (s.row_scale.size() < rows_max) {
    s.row_scale.resize(rows_max);
    s.row_zpoff.resize(rows_max);
  }
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
        uint8_t* d = abuf + r * ld;
        const float inv = 1.0f / q.scale;
        if (s8)
          qk.quantize_s8(xr, d, k, inv, q.zero_point - 128);
        else
          qk.quantize_u8(xr, d, k, inv, q.zero_point);
        std::memset(d + k, 0, kp - k);
        rs[r] = q.scale;
        rz[r] = zp_offset(gk.a_format, q.zero_point);
      }
    });
    if (bad == 1) throw std::domain_error("x contains NaN");
    if (bad == 2) throw std::domain_error("x contains inf");
    epi.row_index_base = r0;
    compute_block(gk, p, abuf, ld, r0, rows, epi);
  }
}

}  // namespace

void linear_int8_op(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                    const float* x, std::size_t m, std::size_t ldx, bool relu, float* out) {
  check_kernel(gk);
  if (m == 0) return;
  linear_int8_run(gk, qk, p, x, m, ldx,
                  EpiF32{&gemm_epilogues(), out, p.n, &p, relu, nullptr, nullptr, 0});
}

void linear_u8_op(const GemmKernels& gk, const PackedView& p, const uint8_t* a, std::size_t m,
                  std::size_t lda, const float* row_scale, const int32_t* row_zp, bool relu,
                  float* out) {
  check_kernel(gk);
  if (m == 0) return;
  // The epilogue's zero-point correction uses zp in the kernel's A format (zp_offset).
  std::vector<int32_t> zpoff(m);
  for (std::size_t r = 0; r < m; ++r) zpoff[r] = zp_offset(gk.a_format, row_zp[r]);
  const EpiF32 epi{&gemm_epilogues(), out, p.n, &p, relu, row_scale, zpoff.data(), 0};
  run_quantized(gk, p, a, AType::kU8, m, lda, epi);
}

void linear_q_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at, std::size_t m,
                 std::size_t lda, float a_scale, int32_t a_zp, float out_scale, int32_t out_zp,
                 QDType out_dtype, bool relu, void* out) {
  check_kernel(gk);
  if (m == 0) return;
  const int32_t zp_u8 = at == AType::kS8 ? a_zp + 128 : a_zp;
  EpiQ8 epi{&gemm_epilogues(), static_cast<uint8_t*>(out), p.n, &p, TileEpilogueArgs{}};
  epi.base.relu = relu;
  epi.base.zpoff = zp_offset(gk.a_format, zp_u8);
  epi.base.a_scale = a_scale;
  epi.base.inv = 1.0f / out_scale;
  epi.base.lo = static_cast<float>(qmin_of(out_dtype) - out_zp);
  epi.base.hi = static_cast<float>(qmax_of(out_dtype) - out_zp);
  epi.base.out_zp = out_zp;
  run_quantized(gk, p, static_cast<const uint8_t*>(a), at, m, lda, epi);
}

}  // namespace edgepack
