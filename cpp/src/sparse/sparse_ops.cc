// Sparse dynamic-int8 linear driver: quantize rows (the same kernels and qparams as
// quantize_dynamic per_row uint8 asymmetric), lay tiles of R rows out transposed in groups of
// 4 k (so one weight block meets R rows in one contiguous run), call the kernel per slice group
// and tile, then correct for the zero point and apply the shared epilogue.
//
// Threads: a task is a group of slices (output columns) for all rows; each output is computed
// by exactly one task with the same arithmetic, so results are identical for any thread count.
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

  // Row-major over the slice's 16 outputs: consecutive stores of a row stay inside the slice's
  // 128-column sort window (a few cache lines) instead of striding by N.
  auto epilogue = [&](std::size_t s, const int32_t* acc, std::size_t ldm, std::size_t m0,
                      std::size_t mt) {
    uint32_t col[kSparseSlice];
    float ws[kSparseSlice];
    int32_t cs[kSparseSlice];
    std::size_t nl = 0;
    std::size_t lane_of[kSparseSlice];
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      const uint32_t c = v.perm[s * kSparseSlice + lane];
      if (c == kSparsePadRow) continue;
      col[nl] = c;
      ws[nl] = v.scale[c];
      cs[nl] = v.colsum[c];
      lane_of[nl++] = lane;
    }
    for (std::size_t i = 0; i < mt; ++i) {
      const std::size_t r = m0 + i;
      const float as = a_scale[r];
      const int32_t zp = a_zp[r];
      float* yr = y + r * n;
      for (std::size_t l = 0; l < nl; ++l) {
        const int32_t c = zp_correct(acc[lane_of[l] * ldm + i], kern.a_format, zp, cs[l]);
        yr[col[l]] = dequant_epilogue(c, as, ws[l], v.bias, col[l], relu);
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

  // 2b. Tiles of one panel (R = m_granule rows), each transposed in groups of 4 k:
  //     at[(q*R + r)*4 + j] = a[tile*R + r][4q + j] (rows past m are zero).
  const std::size_t R = kern.m_granule;
  const std::size_t ntiles = (m + R - 1) / R;
  const std::size_t panel = q4 * R * 4;
  std::vector<uint8_t> at(ntiles * panel);
  const uint32_t flip32 = s8 ? 0x80808080u : 0u;
  parallel_for(ntiles, std::max<std::size_t>(1, (1 << 16) / panel), [&](std::size_t b,
                                                                         std::size_t e) {
    for (std::size_t tile = b; tile < e; ++tile) {
      uint8_t* dst = at.data() + tile * panel;
      const std::size_t mt = std::min(R, m - tile * R);
      if (mt < R) std::memset(dst, 0, panel);
      for (std::size_t r = 0; r < mt; ++r) {
        const uint8_t* src = a.data() + (tile * R + r) * kp;
        for (std::size_t q = 0; q < q4; ++q) {  // 4 bytes at a time
          uint32_t g;
          std::memcpy(&g, src + 4 * q, 4);
          g ^= flip32;
          std::memcpy(dst + (q * R + r) * 4, &g, 4);
        }
      }
    }
  });

  // Per-row terms of the epilogue: the zero-point shift in the kernel's encoding and the scale.
  std::vector<uint32_t> shift(m);
  for (std::size_t r = 0; r < m; ++r)
    shift[r] = static_cast<uint32_t>(s8 ? 128 - a_zp[r] : -a_zp[r]);

  // 3. Cache blocking: a group of whole sort windows (8 slices = 128 output columns; ~128 KiB
  //    of blocks) stays in L2 while every tile passes over it; the tile's panel (Kp*R bytes)
  //    stays in L1/L2. Outputs of a window are assembled in a small buffer in column order and
  //    copied out row by row, so stores to y are contiguous. Tasks are groups.
  constexpr std::size_t kWinSlices = kSparseSortWindow / kSparseSlice;
  const std::size_t nwin = (v.nslices + kWinSlices - 1) / kWinSlices;
  const std::size_t win_bytes =
      std::max<std::size_t>(1, std::size_t{w.header().steps} * kSparseSlice * (v.block_k + 2) /
                                   nwin);
  std::size_t gwin = std::max<std::size_t>(1, (std::size_t{128} << 10) / win_bytes);
  const std::size_t want_tasks = 4 * static_cast<std::size_t>(get_num_threads());
  gwin = std::min(gwin, std::max<std::size_t>(1, (nwin + want_tasks - 1) / want_tasks));
  const std::size_t ngroups = (nwin + gwin - 1) / gwin;
  const std::size_t group = gwin * kWinSlices;
  parallel_for(ngroups, 1, [&](std::size_t b, std::size_t e) {
    std::vector<int32_t> acc(group * kSparseSlice * R);
    std::vector<float> wbuf(R * kSparseSortWindow);
    for (std::size_t g = b; g < e; ++g) {
      const std::size_t s0 = g * group, s1 = std::min<std::size_t>(v.nslices, s0 + group);
      for (std::size_t tile = 0; tile < ntiles; ++tile) {
        const std::size_t m0 = tile * R, mt = std::min(R, m - m0);
        kern.run(v, at.data() + tile * panel, R, s0, s1, acc.data());
        for (std::size_t s = s0; s < s1; s += kWinSlices) {
          const std::size_t wbase = s * kSparseSlice;
          const std::size_t wlen = std::min<std::size_t>(kSparseSortWindow, n - wbase);
          for (std::size_t ss = s; ss < std::min(s1, s + kWinSlices); ++ss)
            for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
              const uint32_t col = v.perm[ss * kSparseSlice + lane];
              if (col == kSparsePadRow) continue;
              const int32_t* ac = acc.data() + ((ss - s0) * kSparseSlice + lane) * R;
              const float ws = v.scale[col];
              const uint32_t cs = static_cast<uint32_t>(v.colsum[col]);
              float* wb = wbuf.data() + (col - wbase);
              // Same arithmetic as zp_correct + dequant_epilogue (epilogue.h), rows inner.
              for (std::size_t i = 0; i < mt; ++i) {
                const int32_t c = static_cast<int32_t>(static_cast<uint32_t>(ac[i]) +
                                                       shift[m0 + i] * cs);
                wb[i * kSparseSortWindow] = static_cast<float>(c) * (a_scale[m0 + i] * ws);
              }
              if (v.bias)
                for (std::size_t i = 0; i < mt; ++i) wb[i * kSparseSortWindow] += v.bias[col];
              if (relu)
                for (std::size_t i = 0; i < mt; ++i)
                  if (wb[i * kSparseSortWindow] < 0.0f) wb[i * kSparseSortWindow] = 0.0f;
            }
          for (std::size_t i = 0; i < mt; ++i)
            std::memcpy(y + (m0 + i) * n + wbase, wbuf.data() + i * kSparseSortWindow,
                        wlen * sizeof(float));
        }
      }
    }
  });
}

}  // namespace edgepack
