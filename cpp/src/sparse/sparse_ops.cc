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
#include "gemm/gemm_epilogue.h"

namespace edgepack {
namespace {

constexpr std::size_t kGrainMacs = 1 << 16;  // below this much work, stay on one thread

// Quantize row x[0..k) into a[0..kp) (zero padded). Same calls and order as quantize_dynamic_op.
// Returns 0 ok, 1 NaN, 2 inf.
int quantize_row(const QuantKernels& qk, const float* x, std::size_t k, uint8_t* a, std::size_t kp,
                 float* scale, int32_t* zp) {
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

// The sparse linear from uint8 rows a[m][kp] (zero padded to kp = Kb * B; modified in place
// when the kernel takes int8) with per-row (a_scale, a_zp): both public entry points end here.
void sparse_padded_u8(const SparseKernels& kern, const PackedSparse& w, std::vector<uint8_t>& a,
                      std::size_t m, const float* a_scale, const int32_t* a_zp, float* y,
                      bool relu) {
  const SparseView& v = w.view();
  const std::size_t n = v.n;
  const std::size_t kp = std::size_t{v.kb} * v.block_k;
  const std::size_t q4 = kp / 4;  // groups of 4 k
  const bool s8 = kern.a_format == AFormat::kS8;

  // Average work per slice, to size tasks.
  const std::size_t slice_macs =
      std::max<std::size_t>(1, std::size_t{w.header().steps} * kSparseSlice * v.block_k /
                                   std::max<uint32_t>(1, v.nslices));

  // Per-row terms of the epilogue in the dense GEMM's convention (gemm_epilogue.h):
  // acc = raw - zpoff * colsum with zpoff = a_zp (kU8) or a_zp - 128 (kS8), the same value
  // modulo 2^32 as zp_correct.
  std::vector<int32_t> zpoff(m);
  for (std::size_t r = 0; r < m; ++r) zpoff[r] = s8 ? a_zp[r] - 128 : a_zp[r];
  const GemmEpilogues& ep = gemm_epilogues();
  constexpr std::size_t kWinSlices = kSparseSortWindow / kSparseSlice;
  const std::size_t nwin = (v.nslices + kWinSlices - 1) / kWinSlices;

  // Output of one sort window (128 columns, rows m0..m0+mt): tb holds its raw sums row-major in
  // column order (row stride kSparseSortWindow). The dense GEMM's dispatched tile epilogue
  // (vector width of the machine, bit-identical to the reference) writes y in 16-column pieces
  // with contiguous stores; a last piece short of 16 columns goes through the scalar spec, as
  // the tile epilogue reads 16 columns of colsum/scale/bias.
  auto window_epilogue = [&](const int32_t* tb, std::size_t m0, std::size_t mt, std::size_t wbase) {
    const std::size_t wlen = std::min<std::size_t>(kSparseSortWindow, n - wbase);
    TileEpilogueArgs ea{};
    ea.ldt = kSparseSortWindow;
    ea.relu = relu;
    ea.row_zpoff = zpoff.data() + m0;
    ea.row_scale = a_scale + m0;
    for (std::size_t c0 = 0; c0 < wlen; c0 += 16) {
      const std::size_t col = wbase + c0, nc = std::min<std::size_t>(16, wlen - c0);
      float* yo = y + m0 * n + col;
      if (col + 16 <= n) {
        ea.colsum = v.colsum + col;
        ea.w_scale = v.scale + col;
        ea.bias = v.bias ? v.bias + col : nullptr;
        ep.f32(tb + c0, mt, nc, ea, yo, n);
        continue;
      }
      for (std::size_t i = 0; i < mt; ++i)
        for (std::size_t c = 0; c < nc; ++c) {
          const int32_t raw = tb[i * kSparseSortWindow + c0 + c];
          const int32_t cc = zp_correct(raw, kern.a_format, a_zp[m0 + i], v.colsum[col + c]);
          yo[i * n + c] =
              dequant_epilogue(cc, a_scale[m0 + i], v.scale[col + c], v.bias, col + c, relu);
        }
    }
  };

  if (m == 1) {
    // 2a. GEMV: the padded row is the transposed tile of one row. Tasks are whole windows, so
    //     a window's outputs can be un-permuted into one row buffer.
    if (s8)
      for (auto& b : a) b ^= 0x80;
    const std::size_t grain = std::max<std::size_t>(1, kGrainMacs / (slice_macs * kWinSlices));
    parallel_for(nwin, grain, [&](std::size_t b, std::size_t e) {
      int32_t acc[kSparseSortWindow], row[kSparseSortWindow];
      for (std::size_t wi = b; wi < e; ++wi) {
        const std::size_t s0 = wi * kWinSlices;
        const std::size_t s1 = std::min<std::size_t>(v.nslices, s0 + kWinSlices);
        kern.run(v, a.data(), 1, s0, s1, acc);
        const std::size_t wbase = s0 * kSparseSlice;
        for (std::size_t i = 0; i < (s1 - s0) * kSparseSlice; ++i) {
          const uint32_t col = v.perm[wbase + i];
          if (col != kSparsePadRow) row[col - wbase] = acc[i];
        }
        window_epilogue(row, 0, 1, wbase);
      }
    });
    return;
  }

  // 2b. Tiles of one panel (R = m_granule rows), each transposed in groups of 4 k:
  //     at[(q*R + r)*4 + j] = a[tile*R + r][4q + j] (rows past m are zero).
  const std::size_t R = m <= kern.m_granule_small ? kern.m_granule_small : kern.m_granule;
  const std::size_t ntiles = (m + R - 1) / R;
  const std::size_t panel = q4 * R * 4;
  std::vector<uint8_t> at(ntiles * panel);
  const uint32_t flip32 = s8 ? 0x80808080u : 0u;
  parallel_for(ntiles, std::max<std::size_t>(1, (1 << 16) / panel),
               [&](std::size_t b, std::size_t e) {
                 // Locals, not captured references: the byte stores may alias anything, so gcc
                 // would reload captured values every iteration (measured: 10% of a call at M =
                 // 128, K = 1024).
                 const std::size_t nq = q4, rr = R, mm = m, kpp = kp;
                 const uint32_t flip = flip32;
                 const uint8_t* const abase = a.data();
                 uint8_t* const atbase = at.data();
                 for (std::size_t tile = b; tile < e; ++tile) {
                   uint8_t* dst = atbase + tile * panel;
                   const std::size_t mt = std::min(rr, mm - tile * rr);
                   if (mt < rr) std::memset(dst, 0, panel);
                   for (std::size_t r = 0; r < mt; ++r) {
                     const uint8_t* src = abase + (tile * rr + r) * kpp;
                     uint8_t* d = dst + r * 4;
                     for (std::size_t q = 0; q < nq; ++q) {  // 4 bytes at a time
                       uint32_t g;
                       std::memcpy(&g, src + 4 * q, 4);
                       g ^= flip;
                       std::memcpy(d + q * rr * 4, &g, 4);
                     }
                   }
                 }
               });

  // 3. Cache blocking: a group of whole sort windows (8 slices = 128 output columns; ~128 KiB
  //    of blocks) stays in L2 while every tile passes over it; the tile's panel (Kp*R bytes)
  //    stays in L1/L2. The raw sums of a window are scattered (un-permuted) into a small
  //    row-major int32 tile in column order, and the dense GEMM's dispatched tile epilogue
  //    (vector width of the machine, bit-identical to the reference) writes y from it in
  //    16-column pieces with contiguous stores. Tasks are groups.
  const std::size_t win_bytes = std::max<std::size_t>(
      1, std::size_t{w.header().steps} * kSparseSlice * (v.block_k + 2) / nwin);
  std::size_t gwin = std::max<std::size_t>(1, (std::size_t{128} << 10) / win_bytes);
  const std::size_t want_tasks = 4 * static_cast<std::size_t>(get_num_threads());
  gwin = std::min(gwin, std::max<std::size_t>(1, (nwin + want_tasks - 1) / want_tasks));
  const std::size_t ngroups = (nwin + gwin - 1) / gwin;
  const std::size_t group = gwin * kWinSlices;
  parallel_for(ngroups, 1, [&](std::size_t b, std::size_t e) {
    std::vector<int32_t> acc(group * kSparseSlice * R);
    std::vector<int32_t> tbuf(R * kSparseSortWindow);
    for (std::size_t g = b; g < e; ++g) {
      const std::size_t s0 = g * group, s1 = std::min<std::size_t>(v.nslices, s0 + group);
      for (std::size_t tile = 0; tile < ntiles; ++tile) {
        const std::size_t m0 = tile * R, mt = std::min(R, m - m0);
        kern.run(v, at.data() + tile * panel, R, s0, s1, acc.data());
        for (std::size_t s = s0; s < s1; s += kWinSlices) {
          const std::size_t wbase = s * kSparseSlice;
          for (std::size_t ss = s; ss < std::min(s1, s + kWinSlices); ++ss)
            for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
              const uint32_t col = v.perm[ss * kSparseSlice + lane];
              if (col == kSparsePadRow) continue;
              const int32_t* ac = acc.data() + ((ss - s0) * kSparseSlice + lane) * R;
              int32_t* tb = tbuf.data() + (col - wbase);
              std::size_t i = 0;
              for (; i + 4 <= mt; i += 4) {  // loads first: the stores cannot alias them then
                const int32_t r0 = ac[i], r1 = ac[i + 1], r2 = ac[i + 2], r3 = ac[i + 3];
                tb[i * kSparseSortWindow] = r0;
                tb[(i + 1) * kSparseSortWindow] = r1;
                tb[(i + 2) * kSparseSortWindow] = r2;
                tb[(i + 3) * kSparseSortWindow] = r3;
              }
              for (; i < mt; ++i) tb[i * kSparseSortWindow] = ac[i];
            }
          window_epilogue(tbuf.data(), m0, mt, wbase);
        }
      }
    }
  });
}

}  // namespace

void sparse_linear_int8_op(const SparseKernels& kern, const PackedSparse& w, const float* x,
                           std::size_t m, float* y, bool relu) {
  if (m == 0) return;
  const SparseView& v = w.view();
  const QuantKernels& qk = quant_kernels();
  const std::size_t k = v.k;
  const std::size_t kp = std::size_t{v.kb} * v.block_k;

  // Per-row dynamic quantization into a padded row-major buffer.
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
  sparse_padded_u8(kern, w, a, m, a_scale.data(), a_zp.data(), y, relu);
}

void sparse_linear_u8_op(const SparseKernels& kern, const PackedSparse& w, const uint8_t* a,
                         std::size_t lda, std::size_t m, const float* a_scale, const int32_t* a_zp,
                         float* y, bool relu) {
  if (m == 0) return;
  const SparseView& v = w.view();
  const std::size_t k = v.k, kp = std::size_t{v.kb} * v.block_k;
  std::vector<uint8_t> ap(m * kp);
  parallel_for(m, std::max<std::size_t>(1, (1 << 16) / kp), [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      std::memcpy(ap.data() + r * kp, a + r * lda, k);
      std::memset(ap.data() + r * kp + k, 0, kp - k);
    }
  });
  sparse_padded_u8(kern, w, ap, m, a_scale, a_zp, y, relu);
}

}  // namespace edgepack
