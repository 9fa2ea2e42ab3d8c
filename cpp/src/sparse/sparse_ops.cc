// Sparse dynamic-int8 linear driver: quantize rows (the same kernels and qparams as
// quantize_dynamic per_row uint8 asymmetric), lay a tile of rows out transposed in groups of 4 k
// (so one weight block meets up to 64 rows in one contiguous run), call the kernel per slice,
// then correct for the zero point and apply the shared epilogue.
//
// Threads: a task is (row tile, slice range); each output is computed by exactly one task with
// the same arithmetic, so results are identical for any thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "edgepack/epilogue.h"
#include "edgepack/parallel.h"
#include "edgepack/quant.h"
#include "edgepack/sparse.h"

namespace edgepack {
namespace {

constexpr std::size_t kTileM = 64;        // rows per tile: the transposed tile stays in L2
constexpr std::size_t kGrainMacs = 1 << 16;  // below this much work, stay on one thread

std::size_t round_up(std::size_t x, std::size_t g) { return (x + g - 1) / g * g; }

// Quantize row x[0..k) into a[0..kp) (zero padded). Same calls and order as quantize_dynamic_op.
// Returns 0 ok, 1 NaN, 2 inf.
int quantize_row(const QuantKernels& qk, const float* x, std::size_t k, uint8_t* a,
                 std::size_t kp, float* scale, int32_t* zp) {
  float mn, mx;
  if (qk.minmax(x, k, &mn, &mx)) return 1;
  if (!std::isfinite(mn) || !std::isfinite(mx)) return 2;
  const QParams p = qparams_from_minmax(mn, mx, QDType::kUInt8, false);
  *scale = p.scale;
  *zp = p.zero_point;
  qk.quantize_u8(x, a, k, 1.0f / p.scale, p.zero_point);
  std::memset(a + k, 0, kp - k);
  return 0;
}

}  // namespace

void sparse_linear_int8_op(const SparseKernels& kern, const PackedSparse& w, const float* x,
                           std::size_t m, float* y, bool relu) {
  if (m == 0) return;
  const SparseView& v = w.view();
  const QuantKernels& qk = quant_kernels();
  const std::size_t k = v.k, n = v.n;
  const std::size_t kp = std::size_t{v.kb} * v.block_k;
  const std::size_t q4 = kp / 4;  // groups of 4 k
  const bool s8 = kern.a_format == AFormat::kS8;

  // 1. Per-row dynamic quantization into a padded row-major buffer.
  std::vector<uint8_t> a(m * kp);
  std::vector<float> a_scale(m);
  std::vector<int32_t> a_zp(m);
  std::atomic<int> bad{0};
  parallel_for(m, std::max<std::size_t>(1, (1 << 15) / k), [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      const int rc = quantize_row(qk, x + r * k, k, a.data() + r * kp, kp, &a_scale[r], &a_zp[r]);
      if (rc) bad = rc;
    }
  });
  if (bad == 1) throw std::domain_error("x contains NaN");
  if (bad == 2) throw std::domain_error("x contains inf");

  // Average work per slice, to size tasks.
  const std::size_t slice_macs =
      std::max<std::size_t>(1, std::size_t{w.header().steps} * kSparseSlice * v.block_k /
                                   std::max<uint32_t>(1, v.nslices));

  auto epilogue = [&](std::size_t s, const int32_t* acc, std::size_t ldm, std::size_t m0,
                      std::size_t mt) {
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      const uint32_t col = v.perm[s * kSparseSlice + lane];
      if (col == kSparsePadRow) continue;
      const float ws = v.scale[col];
      const int32_t cs = v.colsum[col];
      for (std::size_t i = 0; i < mt; ++i) {
        const std::size_t r = m0 + i;
        const int32_t c = zp_correct(acc[lane * ldm + i], kern.a_format, a_zp[r], cs);
        y[r * n + col] = dequant_epilogue(c, a_scale[r], ws, v.bias, col, relu);
      }
    }
  };

  if (m == 1) {
    // 2a. GEMV: the padded row is the transposed tile of one row.
    if (s8)
      for (auto& b : a) b ^= 0x80;
    const std::size_t grain = std::max<std::size_t>(1, kGrainMacs / slice_macs);
    parallel_for(v.nslices, grain, [&](std::size_t b, std::size_t e) {
      std::vector<int32_t> acc((e - b) * kSparseSlice);
      kern.run(v, a.data(), 1, b, e, acc.data());
      for (std::size_t s = b; s < e; ++s)
        epilogue(s, acc.data() + (s - b) * kSparseSlice, 1, 0, 1);
    });
    return;
  }

  // 2b. Row tiles, transposed: at[(q*ldm + i)*4 + j] = a[m0 + i][4q + j].
  const std::size_t ntiles = (m + kTileM - 1) / kTileM;
  const std::size_t ldm_full = round_up(kTileM, kern.m_granule);
  std::vector<uint8_t> at(ntiles * q4 * ldm_full * 4);
  const uint32_t flip32 = s8 ? 0x80808080u : 0u;
  parallel_for(ntiles, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t tile = b; tile < e; ++tile) {
      const std::size_t m0 = tile * kTileM, mt = std::min(kTileM, m - m0);
      const std::size_t ldm = round_up(mt, kern.m_granule);
      uint8_t* dst = at.data() + tile * q4 * ldm_full * 4;
      std::memset(dst, 0, q4 * ldm * 4);
      for (std::size_t i = 0; i < mt; ++i) {
        const uint8_t* src = a.data() + (m0 + i) * kp;
        for (std::size_t q = 0; q < q4; ++q) {  // 4 bytes at a time
          uint32_t g;
          std::memcpy(&g, src + 4 * q, 4);
          g ^= flip32;
          std::memcpy(dst + (q * ldm + i) * 4, &g, 4);
        }
      }
    }
  });

  // 3. Tasks over (tile, slice).
  const std::size_t units = ntiles * v.nslices;
  const std::size_t grain = std::max<std::size_t>(1, kGrainMacs / (slice_macs * kTileM));
  parallel_for(units, grain, [&](std::size_t b, std::size_t e) {
    std::vector<int32_t> acc(kSparseSlice * ldm_full);
    for (std::size_t u = b; u < e; ++u) {
      const std::size_t tile = u / v.nslices, s = u % v.nslices;
      const std::size_t m0 = tile * kTileM, mt = std::min(kTileM, m - m0);
      const std::size_t ldm = round_up(mt, kern.m_granule);
      kern.run(v, at.data() + tile * q4 * ldm_full * 4, ldm, s, s + 1, acc.data());
      epilogue(s, acc.data(), ldm, m0, mt);
    }
  });
}

}  // namespace edgepack
