// Packing, serialization and validation of the SELL-16 block-sparse int8 format (see sparse.h).
// Why one flat buffer: to_bytes() is then a copy, from_bytes() a copy plus checks, and the
// kernels read the same bytes a file holds.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "edgepack/sparse.h"

namespace edgepack {
namespace {

constexpr char kMagic[8] = {'E', 'P', 'S', 'P', 'A', 'R', 'S', 'E'};

constexpr std::size_t kSortWindow = kSparseSortWindow;
static_assert(kSortWindow % kSparseSlice == 0, "a window holds whole slices");

std::size_t align64(std::size_t x) { return (x + 63) & ~std::size_t{63}; }

struct Layout {
  std::size_t perm, row_nblk, slice_ptr, scale, bias, colsum, idx, values, total;
};

// Section offsets from the header fields alone (sizes in size_t: no 32-bit overflow).
Layout layout_of(const SparseHeader& h) {
  const std::size_t np = std::size_t{h.nslices} * kSparseSlice;
  const std::size_t steps = h.steps;
  Layout l{};
  std::size_t o = sizeof(SparseHeader);
  l.perm = o;
  o = align64(o + np * 4);
  l.row_nblk = o;
  o = align64(o + np * 2);
  l.slice_ptr = o;
  o = align64(o + (std::size_t{h.nslices} + 1) * 4);
  l.scale = o;
  o = align64(o + std::size_t{h.n} * 4);
  l.bias = o;
  if (h.flags & 1u) o = align64(o + std::size_t{h.n} * 4);
  l.colsum = o;
  o = align64(o + std::size_t{h.n} * 4);
  l.idx = o;
  o = align64(o + steps * kSparseSlice * 2);
  l.values = o;
  o = o + steps * kSparseSlice * h.block_k;
  l.total = o;
  return l;
}

// 64-bit FNV-1a-style hash over little-endian 8-byte words (then the tail bytes): cheap, and
// every step is a bijection of the state, so any single changed word changes it.
uint64_t checksum(const uint8_t* p, std::size_t n, uint64_t h = 1469598103934665603ull) {
  const uint64_t prime = 1099511628211ull;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * prime;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * prime;
  return h;
}

// Covers the header fields before the checksum (56 bytes) and the whole payload, so a changed
// shape field is caught even when the payload would still decode.
uint64_t buffer_checksum(const uint8_t* b, std::size_t size) {
  const uint64_t h = checksum(b, offsetof(SparseHeader, checksum));
  return checksum(b + sizeof(SparseHeader), size - sizeof(SparseHeader), h);
}

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("corrupt sparse buffer: " + what);
}

bool valid_block(std::size_t b) { return b == 4 || b == 8 || b == 16; }

}  // namespace

PackedSparse PackedSparse::pack(const int8_t* w, std::size_t n, std::size_t k, const float* scale,
                                const float* bias, std::size_t block_k) {
  if (!valid_block(block_k))
    throw std::invalid_argument("block must be (1, 4), (1, 8) or (1, 16); got (1, " +
                                std::to_string(block_k) + ")");
  if (n == 0 || k == 0) throw std::invalid_argument("w_q must have non-empty shape [N, K]");
  if (k > kMaxK)
    throw std::invalid_argument("w_q has K = " + std::to_string(k) + " > " + std::to_string(kMaxK) +
                                " (int32 accumulation would not be exact)");
  if (n > (std::size_t{1} << 30)) throw std::invalid_argument("w_q has too many rows");
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(scale[i]) || !(scale[i] > 0.0f))
      throw std::invalid_argument("scale must be finite and > 0, got " + std::to_string(scale[i]) +
                                  " at index " + std::to_string(i));
    if (bias && !std::isfinite(bias[i]))
      throw std::invalid_argument("bias must be finite, got " + std::to_string(bias[i]) +
                                  " at index " + std::to_string(i));
  }
  const std::size_t kb = (k + block_k - 1) / block_k;
  const std::size_t t = block_k / 4;
  if (n * kb * block_k >= (std::size_t{1} << 32))  // header counts (nnz, steps) are uint32
    throw std::invalid_argument("w_q is too large for the sparse format (N x K >= 2^32 weights)");

  // Which blocks are non-zero, per row.
  std::vector<std::vector<uint16_t>> blocks(n);
  std::vector<int32_t> colsum(n, 0);
  std::size_t nnz = 0, nnz_blocks = 0;
  for (std::size_t r = 0; r < n; ++r) {
    const int8_t* row = w + r * k;
    for (std::size_t j = 0; j < kb; ++j) {
      bool any = false;
      for (std::size_t c = j * block_k; c < std::min(k, (j + 1) * block_k); ++c) {
        if (row[c] != 0) {
          any = true;
          ++nnz;
          colsum[r] += row[c];
        }
      }
      if (any) blocks[r].push_back(static_cast<uint16_t>(j));
    }
    nnz_blocks += blocks[r].size();
  }
  // Rows by block count, descending, within windows of kSortWindow rows (stable, so equal rows
  // keep their order). Sorting makes the rows of a slice about equally long (little padding);
  // keeping it inside a window keeps a slice's outputs within 128 neighbouring columns, so the
  // scattered epilogue stores of consecutive slices land in the same few cache lines.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  for (std::size_t w0 = 0; w0 < n; w0 += kSortWindow)
    std::stable_sort(order.begin() + w0, order.begin() + std::min(n, w0 + kSortWindow),
                     [&](uint32_t a, uint32_t b) { return blocks[a].size() > blocks[b].size(); });

  SparseHeader h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kSparseVersion;
  h.format = kSparseFormatSell16;
  h.block_rows = 1;
  h.block_k = static_cast<uint32_t>(block_k);
  h.slice = kSparseSlice;
  h.flags = bias ? 1u : 0u;
  h.n = static_cast<uint32_t>(n);
  h.k = static_cast<uint32_t>(k);
  h.nslices = static_cast<uint32_t>((n + kSparseSlice - 1) / kSparseSlice);
  std::vector<uint32_t> slice_ptr(h.nslices + 1, 0);
  for (uint32_t s = 0; s < h.nslices; ++s) {
    std::size_t len = 0;
    for (std::size_t r = s * kSparseSlice; r < std::min<std::size_t>(n, (s + 1) * kSparseSlice);
         ++r)
      len = std::max(len, blocks[order[r]].size());
    slice_ptr[s + 1] = slice_ptr[s] + static_cast<uint32_t>(len);
  }
  h.steps = slice_ptr[h.nslices];
  h.nnz_blocks = static_cast<uint32_t>(nnz_blocks);
  h.nnz = static_cast<uint32_t>(nnz);

  PackedSparse p;
  p.hdr_ = h;
  const Layout l = layout_of(h);
  p.buf_.assign(l.total, 0);
  uint8_t* b = p.buf_.data();
  auto* perm = reinterpret_cast<uint32_t*>(b + l.perm);
  auto* row_nblk = reinterpret_cast<uint16_t*>(b + l.row_nblk);
  auto* idx = reinterpret_cast<uint16_t*>(b + l.idx);
  auto* vals = reinterpret_cast<int8_t*>(b + l.values);
  std::memcpy(b + l.slice_ptr, slice_ptr.data(), slice_ptr.size() * 4);
  std::memcpy(b + l.scale, scale, n * 4);
  if (bias) std::memcpy(b + l.bias, bias, n * 4);
  std::memcpy(b + l.colsum, colsum.data(), n * 4);
  for (std::size_t s = 0; s < h.nslices; ++s) {
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      const std::size_t r = s * kSparseSlice + lane;
      if (r >= n) {
        perm[r] = kSparsePadRow;
        continue;
      }
      const uint32_t row = order[r];
      perm[r] = row;
      row_nblk[r] = static_cast<uint16_t>(blocks[row].size());
      for (std::size_t i = 0; i < blocks[row].size(); ++i) {
        const std::size_t e = slice_ptr[s] + i;
        const std::size_t j = blocks[row][i];
        idx[e * kSparseSlice + lane] = static_cast<uint16_t>(j);
        for (std::size_t c = 0; c < block_k; ++c) {
          const std::size_t kk = j * block_k + c;
          const std::size_t tt = c / 4, ii = c % 4;
          vals[((e * t + tt) * kSparseSlice + lane) * 4 + ii] = kk < k ? w[row * k + kk] : 0;
        }
      }
    }
  }
  std::memcpy(b, &h, sizeof(h));
  h.checksum = buffer_checksum(b, l.total);
  p.hdr_ = h;
  std::memcpy(b, &h, sizeof(h));
  p.bind_view();
  return p;
}

void PackedSparse::bind_view() {
  if (buf_.empty()) {  // default-constructed or moved-from
    view_ = SparseView{};
    return;
  }
  const Layout l = layout_of(hdr_);
  const uint8_t* b = buf_.data();
  SparseView& v = view_;
  v.n = hdr_.n;
  v.k = hdr_.k;
  v.block_k = hdr_.block_k;
  v.kb = (hdr_.k + hdr_.block_k - 1) / hdr_.block_k;
  v.t = hdr_.block_k / 4;
  v.nslices = hdr_.nslices;
  v.perm = reinterpret_cast<const uint32_t*>(b + l.perm);
  v.row_nblk = reinterpret_cast<const uint16_t*>(b + l.row_nblk);
  v.slice_ptr = reinterpret_cast<const uint32_t*>(b + l.slice_ptr);
  v.scale = reinterpret_cast<const float*>(b + l.scale);
  v.bias = (hdr_.flags & 1u) ? reinterpret_cast<const float*>(b + l.bias) : nullptr;
  v.colsum = reinterpret_cast<const int32_t*>(b + l.colsum);
  v.idx = reinterpret_cast<const uint16_t*>(b + l.idx);
  v.values = reinterpret_cast<const int8_t*>(b + l.values);
}

PackedSparse PackedSparse::from_bytes(const uint8_t* data, std::size_t size) {
  if (size < sizeof(SparseHeader))
    bad("buffer has " + std::to_string(size) + " bytes, less than the 64-byte header");
  SparseHeader h;
  std::memcpy(&h, data, sizeof(h));
  if (std::memcmp(h.magic, kMagic, 8) != 0) bad("bad magic (not an edgepack sparse buffer)");
  if (h.version != kSparseVersion)
    bad("unsupported version " + std::to_string(h.version) + " (this build reads version " +
        std::to_string(kSparseVersion) + ")");
  if (h.format != kSparseFormatSell16) bad("unknown format " + std::to_string(h.format));
  if (h.block_rows != 1 || !valid_block(h.block_k))
    bad("unsupported block (" + std::to_string(h.block_rows) + ", " + std::to_string(h.block_k) +
        ")");
  if (h.slice != kSparseSlice) bad("unsupported slice height " + std::to_string(h.slice));
  if (h.flags & ~1u) bad("unknown flags");
  if (h.n == 0 || h.k == 0 || h.k > kMaxK || h.n > (1u << 30)) bad("bad shape");
  if (h.nslices != (h.n + kSparseSlice - 1) / kSparseSlice) bad("slice count does not match N");
  const std::size_t kb = (std::size_t{h.k} + h.block_k - 1) / h.block_k;
  if (std::size_t{h.steps} > std::size_t{h.nslices} * kb) bad("step count exceeds N x K blocks");
  const Layout l = layout_of(h);
  if (l.total != size)
    bad("size is " + std::to_string(size) + " bytes, the header implies " +
        std::to_string(l.total));
  if (buffer_checksum(data, size) != h.checksum) bad("checksum mismatch");
  PackedSparse p;
  p.buf_.assign(data, data + size);
  p.hdr_ = h;
  p.bind_view();
  p.validate();
  return p;
}

// Semantic checks: everything a kernel relies on to stay in bounds, plus consistency of the
// derived fields (a buffer that passes decodes to exactly one weight matrix).
void PackedSparse::validate() const {
  const SparseView& v = view_;
  const std::size_t np = std::size_t{v.nslices} * kSparseSlice;
  if (v.slice_ptr[0] != 0 || v.slice_ptr[v.nslices] != hdr_.steps) bad("slice pointers");
  std::vector<uint8_t> seen(v.n, 0);
  std::size_t nnz = 0, nnz_blocks = 0;
  std::vector<int64_t> colsum(v.n, 0);
  for (std::size_t s = 0; s < v.nslices; ++s) {
    if (v.slice_ptr[s + 1] < v.slice_ptr[s]) bad("slice pointers decrease");
    const std::size_t len = v.slice_ptr[s + 1] - v.slice_ptr[s];
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      const std::size_t r = s * kSparseSlice + lane;
      const uint32_t row = v.perm[r];
      const std::size_t cnt = v.row_nblk[r];
      if (row == kSparsePadRow) {
        if (r < v.n) bad("padding lane inside the first N rows");
        if (cnt != 0) bad("padding lane with blocks");
      } else {
        if (row >= v.n || seen[row]) bad("row permutation is not a permutation");
        if (row / kSortWindow != r / kSortWindow) bad("row permutation leaves its window");
        seen[row] = 1;
      }
      if (cnt > len) bad("row block count exceeds its slice");
      nnz_blocks += cnt;
      for (std::size_t i = 0; i < len; ++i) {
        const std::size_t e = v.slice_ptr[s] + i;
        const uint16_t j = v.idx[e * kSparseSlice + lane];
        if (j >= v.kb) bad("block index out of range");
        if (i > 0 && i < cnt && j <= v.idx[(e - 1) * kSparseSlice + lane])
          bad("block indices not increasing");
        for (std::size_t c = 0; c < v.block_k; ++c) {
          const int8_t x = v.values[((e * v.t + c / 4) * kSparseSlice + lane) * 4 + c % 4];
          const std::size_t kk = std::size_t{j} * v.block_k + c;
          if (x != 0) {
            if (i >= cnt) bad("non-zero padding block");
            if (kk >= v.k) bad("non-zero weight past K");
            ++nnz;
            colsum[row] += x;
          }
        }
        if (i >= cnt && j != 0) bad("padding block with non-zero index");
      }
    }
  }
  if (np < v.n) bad("too few rows");
  if (nnz != hdr_.nnz || nnz_blocks != hdr_.nnz_blocks) bad("non-zero counts do not match");
  for (std::size_t n = 0; n < v.n; ++n) {
    if (colsum[n] != v.colsum[n]) bad("column sums do not match the weights");
    if (!std::isfinite(v.scale[n]) || !(v.scale[n] > 0.0f)) bad("scale not finite and > 0");
    if (v.bias && !std::isfinite(v.bias[n])) bad("bias not finite");
  }
}

void PackedSparse::unpack(int8_t* w) const {
  const SparseView& v = view_;
  std::memset(w, 0, std::size_t{v.n} * v.k);
  for (std::size_t s = 0; s < v.nslices; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      const std::size_t r = s * kSparseSlice + lane;
      if (v.perm[r] == kSparsePadRow) continue;
      for (std::size_t i = 0; i < v.row_nblk[r]; ++i) {
        const std::size_t e = v.slice_ptr[s] + i;
        const std::size_t j = v.idx[e * kSparseSlice + lane];
        for (std::size_t c = 0; c < v.block_k; ++c) {
          const std::size_t kk = j * v.block_k + c;
          if (kk < v.k)
            w[std::size_t{v.perm[r]} * v.k + kk] =
                v.values[((e * v.t + c / 4) * kSparseSlice + lane) * 4 + c % 4];
        }
      }
    }
}

}  // namespace edgepack
