// Block-sparse int8 weights: the packed format every ISA reads, the kernel contract, and the
// dynamic-int8 sparse linear operation (same contract and epilogue as the dense linear_int8 of
// python/edgepack/reference.py, bit for bit on the same zeroed weights).
//
// Format 1 ("SELL-16 block-sparse int8"), for w[N][K] int8 with per-output-channel scales:
//   * K is split into Kb = ceil(K / B) blocks of B = block_k consecutive k (B in {4, 8, 16}; a
//     block is 1 x B: one output row n). K that is not a multiple of B is padded with zero
//     weights (the kernels read a zero-padded copy of the activations), so any K >= 1 packs.
//   * A block is stored when any of its B weights is non-zero. Rows are sorted by their block
//     count (descending, stable, within windows of 128 rows: outputs of a slice stay close) and
//     cut into slices of 16 rows; a slice has as many "steps" as its longest row, shorter rows
//     are padded with zero blocks (index 0). Sorting keeps padding small, so bytes ~
//     nnz_blocks * (B + 2). Loaders check that perm keeps every row inside its window.
//   * Step e of a slice holds one block per lane (row): idx[e*16 + lane] (uint16 block column;
//     Kb <= 16384 because K <= kMaxK) and values in kernel order
//     values[((e*T + t)*16 + lane)*4 + i] = w[row][(idx*T + t)*4 + i], T = B / 4, i < 4.
//     So one step is T groups of 64 bytes = 16 lanes x 4 k: exactly one vpdpbusd zmm operand /
//     four sdot q-registers. perm[slice*16 + lane] is the output column n (0xFFFFFFFF for the
//     padding lanes of the last slice).
// Serialized (and in memory) as one buffer: a 64-byte little-endian SparseHeader, then the
// sections below, each starting at a 64-byte aligned offset, in this order:
//   perm u32[NP] | row_nblk u16[NP] | slice_ptr u32[nslices+1] (in steps) | scale f32[N] |
//   bias f32[N] (flag bit 0) | colsum i32[N] (= sum_k w[n][k]) | idx u16[steps*16] |
//   values i8[steps*16*B]                                     (NP = nslices * 16)
// The checksum (64-bit FNV-1a-style hash over 8-byte words of the header fields before it and
// of every byte after the header) and a full
// semantic check (indices in range, perm a permutation, padding zero, colsum consistent, scales
// finite and > 0) run before a loaded buffer is trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "edgepack/cpu.h"
#include "edgepack/gemm.h"

namespace edgepack {

constexpr uint32_t kSparseSlice = 16;  // rows per slice (lanes)
constexpr uint32_t kSparseVersion = 1;
constexpr uint32_t kSparseFormatSell16 = 1;
constexpr uint32_t kSparsePadRow = 0xFFFFFFFFu;  // perm entry of a padding lane
// Rows are permuted only within windows of this many rows (perm maps each window onto itself),
// so the outputs of a window's 8 slices are 128 neighbouring columns.
constexpr uint32_t kSparseSortWindow = 128;

struct SparseHeader {
  char magic[8];        // "EPSPARSE"
  uint32_t version;     // kSparseVersion
  uint32_t format;      // kSparseFormatSell16
  uint32_t block_rows;  // 1
  uint32_t block_k;     // 4, 8 or 16
  uint32_t slice;       // kSparseSlice
  uint32_t flags;       // bit 0: bias present
  uint32_t n;           // output channels
  uint32_t k;           // input features (unpadded)
  uint32_t nslices;     // ceil(n / 16)
  uint32_t steps;       // total steps over all slices
  uint32_t nnz_blocks;  // stored non-padding blocks
  uint32_t nnz;         // non-zero weights
  uint64_t checksum;    // over the fields above and the payload (see above)
};
static_assert(sizeof(SparseHeader) == 64, "SparseHeader must be 64 bytes");

// Pointers into a validated buffer: what the kernels read.
struct SparseView {
  uint32_t n, k, kb, block_k, t, nslices;  // t = block_k / 4 groups of 4 k per block
  const uint32_t* perm;
  const uint16_t* row_nblk;
  const uint32_t* slice_ptr;
  const float* scale;
  const float* bias;  // nullptr when absent
  const int32_t* colsum;
  const uint16_t* idx;
  const int8_t* values;
};

class PackedSparse {
 public:
  PackedSparse() = default;
  // view_ points into buf_: copies and moves re-point it at their own buffer.
  PackedSparse(const PackedSparse& o) : buf_(o.buf_), hdr_(o.hdr_) { bind_view(); }
  PackedSparse(PackedSparse&& o) noexcept : buf_(std::move(o.buf_)), hdr_(o.hdr_) { bind_view(); }
  PackedSparse& operator=(const PackedSparse& o) {
    buf_ = o.buf_;
    hdr_ = o.hdr_;
    bind_view();
    return *this;
  }
  PackedSparse& operator=(PackedSparse&& o) noexcept {
    buf_ = std::move(o.buf_);
    hdr_ = o.hdr_;
    bind_view();
    return *this;
  }

  // w: [n][k] int8 row-major; scale: [n] finite > 0; bias: [n] finite or nullptr.
  // Throws std::invalid_argument (message names the argument) on bad input.
  static PackedSparse pack(const int8_t* w, std::size_t n, std::size_t k, const float* scale,
                           const float* bias, std::size_t block_k);
  // Copies and validates a serialized buffer. Throws std::invalid_argument saying what is wrong.
  static PackedSparse from_bytes(const uint8_t* data, std::size_t size);

  const std::vector<uint8_t>& bytes() const { return buf_; }
  const SparseHeader& header() const { return hdr_; }
  const SparseView& view() const { return view_; }
  // Dense int8 weights [n][k] (zeros restored), for tests and re-packing.
  void unpack(int8_t* w) const;

 private:
  void bind_view();  // sets view_ from buf_ + hdr_ (offsets only, no checks)
  void validate() const;
  std::vector<uint8_t> buf_;
  SparseHeader hdr_{};
  SparseView view_{};
};

// ---- kernel contract ----------------------------------------------------------------------
// A tile of mt activation rows arrives in panels of R = m_granule rows (or, for ldm ==
// m_granule_small, one panel of that many rows), each transposed in
// groups of 4 k: at[((p*Q + q)*R + r)*4 + i] = a[p*R + r][4q + i] for Q = Kb*T groups, panels
// p < ldm/R (rows >= mt are zero), encoded per a_format (see gemm.h). A kernel pass keeps one
// panel (Q*R*4 bytes, 64 KiB for K = 4096, R = 16) hot while it streams a slice's blocks.
// For a single row (ldm == 1) this is just the zero-padded row.
// For slices s in [s_begin, s_end): acc[((s - s_begin)*16 + lane)*ldm + m] = sum over the lane's
// stored blocks (padding blocks are zero) of at . w: raw sums in the kernel's encoding; the
// driver adds the zero-point correction. Padding lanes produce 0.
using SparseKernelFn = void (*)(const SparseView& v, const uint8_t* at, std::size_t ldm,
                                std::size_t s_begin, std::size_t s_end, int32_t* acc);

// Optional fast paths around the kernel (nullptr: the driver's portable loops do the same).
//
// Panel packing (SparsePackPanelFn), for the tile layout above: dst (a panel of R rows) gets
// dst[(q*R + r)*4 + i] = a[r*lda + 4q + i] ^ flip_byte for r < rows and 4q + i < k; bytes at
// k <= 4q + i < 4*q4 meet zero weights (any value), rows >= rows are zero. flip is 0 or
// 0x80808080 (uint8 -> the int8 encoding of kS8 kernels).
using SparsePackPanelFn = void (*)(const uint8_t* a, std::size_t lda, std::size_t k,
                                   std::size_t rows, std::size_t R, std::size_t q4, uint32_t flip,
                                   uint8_t* dst);

// Output of 16 columns (SparseOutF32Fn): for r < mt and c < nc,
// y[r*ldy + c] = dequant_epilogue(acc[lanes[c]*ldm + r] - row_zpoff[r]*colsum[c] (int32,
// wrapping), row_scale[r], w_scale[c], bias, c, relu) (edgepack/epilogue.h). lanes[c] is the
// lane-major acc row of column c (a transpose plus a gather of lane rows, the un-permute);
// the per-column arrays are read for c < nc only; mt <= ldm.
struct SparseOutArgs {
  const int32_t* colsum;
  const float* w_scale;
  const float* bias;  // nullptr: none
  const int32_t* row_zpoff;
  const float* row_scale;
  bool relu;
};
using SparseOutF32Fn = void (*)(const int32_t* acc, std::size_t ldm, const uint32_t* lanes,
                                std::size_t mt, std::size_t nc, const SparseOutArgs& e, float* y,
                                std::size_t ldy);

struct SparseKernels {
  Isa isa;
  AFormat a_format;
  std::size_t m_granule;        // R: rows per panel; ldm for more than one row is a multiple
  std::size_t m_granule_small;  // a smaller panel height also accepted as ldm (one panel); the
                                // driver uses it when M <= it (e.g. ymm panels of 8 on AVX-512)
  std::size_t m_tile;  // rows per kernel call when M > m_granule_small: a multiple of R (the
                       // last call of a GEMM may get fewer panels)
  SparseKernelFn run;
  SparsePackPanelFn pack_panel;  // nullptr: portable loop
  SparseOutF32Fn out_f32;        // nullptr: portable un-permute + the dense tile epilogue
};

// Every compiled-in table (reference first) and the dispatched one.
const std::vector<SparseKernels>& sparse_kernel_list();
const SparseKernels& sparse_kernels();

// y[m][n] = epilogue(sum_k (a[m][k] - a_zp[m]) * w[n][k]) with per-row dynamic uint8 asymmetric
// quantization of x (reference.py: linear_int8_ref). x: [m][k] float32, y: [m][n] float32.
// Threads over (row tiles x slices); results do not depend on the thread count.
// Throws std::domain_error when x holds NaN or inf.
void sparse_linear_int8_op(const SparseKernels& kern, const PackedSparse& w, const float* x,
                           std::size_t m, float* y, bool relu);

// The same from uint8 activations already quantized per row: a[m][K] (row stride lda >= K),
// row r with (a_scale[r], a_zp[r] in [0, 255]); y = epilogue(sum_k (a - a_zp) * w). The sparse
// counterpart of linear_u8_op (gemm_ops.h): what QuantConv2d's per-image im2col path calls.
void sparse_linear_u8_op(const SparseKernels& kern, const PackedSparse& w, const uint8_t* a,
                         std::size_t lda, std::size_t m, const float* a_scale, const int32_t* a_zp,
                         float* y, bool relu);

}  // namespace edgepack
