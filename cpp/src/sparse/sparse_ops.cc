// Sparse dynamic-int8 linear driver: quantize rows (the same kernels and qparams as
// quantize_dynamic per_row uint8 asymmetric), lay tiles of R rows out transposed in groups of
// 4 k (so one weight block meets R rows in one contiguous run), call the kernel per slice group
// and tile, then correct for the zero point and apply the shared epilogue.
//
// Threads: a task is a group of slices (output columns) for all rows; each output is computed
// by exactly one task with the same arithmetic, so results are identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "edgepack/epilogue.h"
#include "edgepack/parallel.h"
#include "edgepack/quant.h"
#include "edgepack/sparse.h"
#include "gemm/gemm_epilogue.h"
#include "kernels_internal.h"

namespace edgepack {
namespace {

constexpr std::size_t kGrainMacs = 1 << 16;  // below this much work, stay on one thread

inline uintptr_t align64(uintptr_t p) { return (p + 63) / 64 * 64; }

// Uninitialized storage with its first byte 64-byte aligned: panels are read in 64-byte runs,
// and a run that straddles two cache lines costs two loads (measured: the AVX-512 kernel 1.5x
// slower on a 16-byte aligned buffer). Nothing is zero-filled that is written anyway.
template <typename T>
struct Aligned {
  explicit Aligned(std::size_t count)
      : hold(new uint8_t[count * sizeof(T) + 63]),
        p(reinterpret_cast<T*>(align64(reinterpret_cast<uintptr_t>(hold.get())))) {}
  std::unique_ptr<uint8_t[]> hold;
  T* p;
};

// The same for the large per-call buffers (quantized rows, panels), kept per calling thread
// and grown only: a fresh buffer of a few hundred KiB each call is a fresh mmap with its page
// faults (measured: ~5% of a call at K = 4096, M = 128). slot: one buffer per use within a call.
// Requests above kScratchKeep bytes are not kept.
constexpr std::size_t kScratchKeep = std::size_t{16} << 20;
class Scratch {
 public:
  Scratch(int slot, std::size_t bytes) {
    thread_local std::vector<uint8_t> kept[2];
    std::vector<uint8_t>* v = &own_;
    if (bytes <= kScratchKeep) v = &kept[slot];
    if (v->size() < bytes + 63) v->resize(bytes + 63);
    p = reinterpret_cast<uint8_t*>(align64(reinterpret_cast<uintptr_t>(v->data())));
  }
  uint8_t* p;

 private:
  std::vector<uint8_t> own_;
};

}  // namespace

// The portable SparsePackPanelFn (sparse.h): 4 bytes at a time.
void sparse_pack_panel_scalar(const uint8_t* a, std::size_t lda, std::size_t k, std::size_t rows,
                              std::size_t R, std::size_t q4, uint32_t flip, uint8_t* dst) {
  const std::size_t qfull = k / 4, ktail = k % 4;
  if (rows < R || qfull < q4) std::memset(dst, 0, q4 * R * 4);
  for (std::size_t r = 0; r < rows; ++r) {
    const uint8_t* src = a + r * lda;
    uint8_t* d = dst + r * 4;
    for (std::size_t q = 0; q < qfull; ++q) {
      uint32_t g;
      std::memcpy(&g, src + 4 * q, 4);
      g ^= flip;
      std::memcpy(d + q * R * 4, &g, 4);
    }
    if (ktail) {
      uint32_t g = 0;
      std::memcpy(&g, src + 4 * qfull, ktail);  // little endian: the k bytes come first
      g ^= flip;  // bytes past k meet zero weights, so their value does not matter
      std::memcpy(d + qfull * R * 4, &g, 4);
    }
  }
}

namespace {

// out[r*ldo + c] = acc[lanes[c]*ldm + r] for c < 16, r < mt: the un-permute of SparseOutF32Fn
// without its epilogue.
void unpermute_scalar(const int32_t* acc, std::size_t ldm, const uint32_t* lanes, std::size_t mt,
                      int32_t* out, std::size_t ldo) {
  for (std::size_t c = 0; c < 16; ++c) {
    const int32_t* src = acc + std::size_t{lanes[c]} * ldm;
    for (std::size_t r = 0; r < mt; ++r) out[r * ldo + c] = src[r];
  }
}

// The sparse linear from uint8 rows a[m] (row stride lda, k valid bytes; the rest of a row is
// not read) with per-row (a_scale, a_zp): both public entry points end here.
void sparse_rows_u8(const SparseKernels& kern, const PackedSparse& w, const uint8_t* a,
                    std::size_t lda, std::size_t m, const float* a_scale, const int32_t* a_zp,
                    float* y, bool relu) {
  const SparseView& v = w.view();
  const std::size_t n = v.n, k = v.k;
  const std::size_t kp = std::size_t{v.kb} * v.block_k;
  const std::size_t q4 = kp / 4;  // groups of 4 k
  const bool s8 = kern.a_format == AFormat::kS8;

  // Average work per slice, to size tasks.
  const std::size_t slice_macs =
      std::max<std::size_t>(1, std::size_t{w.header().steps} * kSparseSlice * v.block_k /
                                   std::max<uint32_t>(1, v.nslices));

  // Per-row terms of the epilogue in the dense GEMM's convention (gemm_epilogue.h):
  // acc = raw - zpoff * colsum modulo 2^32 (zp_correct_off), zpoff = zp_offset(a_zp).
  std::vector<int32_t> zpoff(m);
  for (std::size_t r = 0; r < m; ++r) zpoff[r] = zp_offset(kern.a_format, a_zp[r]);
  const GemmEpilogues& ep = gemm_epilogues();
  const GemmEpilogues ref = gemm_epilogues_ref();
  constexpr std::size_t kWinSlices = kSparseSortWindow / kSparseSlice;
  const std::size_t nwin = (v.nslices + kWinSlices - 1) / kWinSlices;

  // Output of one sort window (128 columns, rows m0..m0+mt): tb holds its raw sums row-major in
  // column order (row stride kSparseSortWindow). The dense GEMM's dispatched tile epilogue
  // (vector width of the machine, bit-identical to the reference) writes y in 16-column pieces
  // with contiguous stores; a last piece short of 16 columns goes through the scalar spec
  // (gemm_epilogues_ref), as the vector tile epilogue reads 16 columns of colsum/scale/bias.
  auto window_epilogue = [&](const int32_t* tb, std::size_t m0, std::size_t mt, std::size_t wbase) {
    const std::size_t wlen = std::min<std::size_t>(kSparseSortWindow, n - wbase);
    TileEpilogueArgs ea{};
    ea.ldt = kSparseSortWindow;
    ea.relu = relu;
    ea.row_zpoff = zpoff.data() + m0;
    ea.row_scale = a_scale + m0;
    for (std::size_t c0 = 0; c0 < wlen; c0 += 16) {
      const std::size_t col = wbase + c0, nc = std::min<std::size_t>(16, wlen - c0);
      ea.colsum = v.colsum + col;
      ea.w_scale = v.scale + col;
      ea.bias = v.bias ? v.bias + col : nullptr;
      (col + 16 <= n ? ep : ref).f32(tb + c0, mt, nc, ea, y + m0 * n + col, n);
    }
  };

  if (m == 1) {
    // 2a. GEMV: the zero-padded row is the transposed tile of one row. Tasks are whole windows,
    //     so a window's outputs can be un-permuted into one row buffer.
    Aligned<uint8_t> row(kp);
    sparse_pack_panel_scalar(a, lda, k, 1, 1, q4, s8 ? 0x80808080u : 0u, row.p);
    const std::size_t grain = std::max<std::size_t>(1, kGrainMacs / (slice_macs * kWinSlices));
    parallel_for(nwin, grain, [&](std::size_t b, std::size_t e) {
      int32_t acc[kSparseSortWindow], out[kSparseSortWindow];
      for (std::size_t wi = b; wi < e; ++wi) {
        const std::size_t s0 = wi * kWinSlices;
        const std::size_t s1 = std::min<std::size_t>(v.nslices, s0 + kWinSlices);
        kern.run(v, row.p, 1, s0, s1, acc);
        const std::size_t wbase = s0 * kSparseSlice;
        for (std::size_t i = 0; i < (s1 - s0) * kSparseSlice; ++i) {
          const uint32_t col = v.perm[wbase + i];
          if (col != kSparsePadRow) out[col - wbase] = acc[i];
        }
        window_epilogue(out, 0, 1, wbase);
      }
    });
    return;
  }

  // 2b. Panels of R = m_granule rows, each transposed in groups of 4 k:
  //     at[(q*R + r)*4 + j] = a[panel*R + r][4q + j] (rows past m and k past K are zero).
  //     A kernel call (tile) takes up to m_tile / R consecutive panels.
  const bool small = m <= kern.m_granule_small;
  const std::size_t R = small ? kern.m_granule_small : kern.m_granule;
  const std::size_t TR = small ? R : std::max(R, kern.m_tile / R * R);
  const std::size_t npanels = (m + R - 1) / R;
  const std::size_t ntiles = (m + TR - 1) / TR;
  const std::size_t panel = q4 * R * 4;  // a multiple of 64 bytes when R >= 4
  Scratch at(1, npanels * panel);
  const uint32_t flip32 = s8 ? 0x80808080u : 0u;
  const SparsePackPanelFn pack = kern.pack_panel ? kern.pack_panel : sparse_pack_panel_scalar;
  parallel_for(
      npanels, std::max<std::size_t>(1, (1 << 16) / panel), [&](std::size_t b, std::size_t e) {
        for (std::size_t p = b; p < e; ++p)
          pack(a + p * R * lda, lda, k, std::min(R, m - p * R), R, q4, flip32, at.p + p * panel);
      });

  // 3. Cache blocking: a group of whole sort windows (8 slices = 128 output columns; ~128 KiB
  //    of blocks) stays in L2 while every tile passes over it; the tile's panel (Kp*R bytes)
  //    stays in L1/L2. A tile is up to m_tile rows (several panels: kernels that share index
  //    and weight loads across panels, see the AVX-512 kernel). The raw sums of a window are
  //    un-permuted 16 columns at a time: kern.out_f32 transposes the lane rows in registers and
  //    applies the epilogue there; otherwise they are copied into a small row-major int32 tile
  //    in column order and the dense GEMM's dispatched tile epilogue (vector width of the
  //    machine, bit-identical to the reference) writes y from it. Tasks are groups.
  const std::size_t win_bytes = std::max<std::size_t>(
      1, std::size_t{w.header().steps} * kSparseSlice * (v.block_k + 2) / nwin);
  std::size_t gwin = std::max<std::size_t>(1, (std::size_t{128} << 10) / win_bytes);
  const std::size_t want_tasks = 4 * static_cast<std::size_t>(get_num_threads());
  gwin = std::min(gwin, std::max<std::size_t>(1, (nwin + want_tasks - 1) / want_tasks));
  const std::size_t ngroups = (nwin + gwin - 1) / gwin;
  const std::size_t group = gwin * kWinSlices;
  parallel_for(ngroups, 1, [&](std::size_t b, std::size_t e) {
    Aligned<int32_t> acc(group * kSparseSlice * TR);
    Aligned<int32_t> tbuf(kern.out_f32 ? 0 : TR * kSparseSortWindow);  // unused with out_f32
    // lane_of[c]: the acc row (lane, counted from the group's first slice) of the group's
    // column c; columns past n point at row 0, a valid read whose result is never stored.
    std::vector<uint32_t> lane_of(group * kSparseSlice);
    for (std::size_t g = b; g < e; ++g) {
      const std::size_t s0 = g * group, s1 = std::min<std::size_t>(v.nslices, s0 + group);
      const std::size_t gbase = s0 * kSparseSlice;
      std::fill(lane_of.begin(), lane_of.end(), 0u);
      for (std::size_t l = 0; l < (s1 - s0) * kSparseSlice; ++l) {
        const uint32_t col = v.perm[gbase + l];
        if (col != kSparsePadRow) lane_of[col - gbase] = static_cast<uint32_t>(l);
      }
      for (std::size_t tile = 0; tile < ntiles; ++tile) {
        const std::size_t m0 = tile * TR, mt = std::min(TR, m - m0);
        const std::size_t ldm = (mt + R - 1) / R * R;  // whole panels
        kern.run(v, at.p + m0 / R * panel, ldm, s0, s1, acc.p);
        for (std::size_t s = s0; s < s1; s += kWinSlices) {
          const std::size_t wbase = s * kSparseSlice;
          const std::size_t wlen = std::min<std::size_t>(kSparseSortWindow, n - wbase);
          const uint32_t* lanes = lane_of.data() + (wbase - gbase);
          if (kern.out_f32) {
            SparseOutArgs oa{nullptr, nullptr, nullptr, zpoff.data() + m0, a_scale + m0, relu};
            for (std::size_t c0 = 0; c0 < wlen; c0 += 16) {
              const std::size_t col = wbase + c0;
              oa.colsum = v.colsum + col;
              oa.w_scale = v.scale + col;
              oa.bias = v.bias ? v.bias + col : nullptr;
              kern.out_f32(acc.p, ldm, lanes + c0, mt, std::min<std::size_t>(16, wlen - c0), oa,
                           y + m0 * n + col, n);
            }
            continue;
          }
          for (std::size_t c0 = 0; c0 < wlen; c0 += 16)
            unpermute_scalar(acc.p, ldm, lanes + c0, mt, tbuf.p + c0, kSparseSortWindow);
          window_epilogue(tbuf.p, m0, mt, wbase);
        }
      }
    }
  });
}

}  // namespace

void sparse_linear_int8_op(const SparseKernels& kern, const PackedSparse& w, const float* x,
                           std::size_t m, float* y, bool relu) {
  if (m == 0) return;
  const std::size_t k = w.view().k;

  // Per-row dynamic uint8 quantization into a row-major buffer (the driver pads k itself):
  // quantize_dynamic_op per row, the linear_int8 spec (NaN/inf: std::domain_error).
  Scratch a(0, m * k);
  std::vector<float> a_scale(m);
  std::vector<int32_t> a_zp(m);
  quantize_dynamic_op(quant_kernels(), x, a.p, QDType::kUInt8, false, true, m, k, a_scale.data(),
                      a_zp.data());
  sparse_rows_u8(kern, w, a.p, k, m, a_scale.data(), a_zp.data(), y, relu);
}

void sparse_linear_u8_op(const SparseKernels& kern, const PackedSparse& w, const uint8_t* a,
                         std::size_t lda, std::size_t m, const float* a_scale, const int32_t* a_zp,
                         float* y, bool relu) {
  if (m == 0) return;
  sparse_rows_u8(kern, w, a, lda, m, a_scale, a_zp, y, relu);
}

}  // namespace edgepack
