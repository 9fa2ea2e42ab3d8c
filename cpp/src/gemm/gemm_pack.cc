// Weight packing into the c4n16 layout (gemm.h) with its self-describing header (gemm_ops.h),
// and the validator that every consumer runs before trusting a buffer's bytes.
#include <cstring>
#include <stdexcept>
#include <string>

#include "edgepack/gemm_ops.h"

namespace edgepack {
namespace {

constexpr char kMagic[8] = {'E', 'P', 'G', 'E', 'M', 'M', '\r', '\n'};

std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("packed weights: " + what);
}

}  // namespace

std::size_t packed_size(std::size_t n, std::size_t k) {
  if (n == 0 || k == 0) throw std::invalid_argument("weights must have N >= 1 and K >= 1");
  if (k > kMaxK)
    throw std::invalid_argument("K = " + std::to_string(k) + " exceeds " + std::to_string(kMaxK) +
                                " (the bound that keeps int32 accumulation exact)");
  if (n >= kMaxOutputs) throw std::invalid_argument("N = " + std::to_string(n) + " is too large");
  const std::size_t np = round_up(n, kNR), kp = round_up(k, kKP);
  return kPackedHeaderBytes + 12 * np + np * kp;
}

uint64_t packed_checksum(const uint8_t* p, std::size_t bytes, uint64_t h) {
  // FNV-1a over 64-bit words (then the tail bytes): fast enough to verify a 64 MiB buffer in
  // tens of milliseconds, and any flipped bit changes it.
  const uint64_t prime = 1099511628211ull;
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * prime;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * prime;
  return h;
}

void pack_weights(const int8_t* w, std::size_t n, std::size_t k, std::size_t ldw,
                  const float* scale, const float* bias, uint8_t* out) {
  const std::size_t total = packed_size(n, k);
  const std::size_t np = round_up(n, kNR), kp = round_up(k, kKP);
  std::memset(out, 0, total);
  auto* colsum = reinterpret_cast<int32_t*>(out + kPackedHeaderBytes);
  auto* sc = reinterpret_cast<float*>(out + kPackedHeaderBytes + 4 * np);
  auto* bs = reinterpret_cast<float*>(out + kPackedHeaderBytes + 8 * np);
  auto* panels = reinterpret_cast<int8_t*>(out + kPackedHeaderBytes + 12 * np);
  for (std::size_t j = 0; j < np; ++j) {
    sc[j] = j < n ? scale[j] : 1.0f;
    bs[j] = (j < n && bias) ? bias[j] : 0.0f;
  }
  for (std::size_t j = 0; j < n; ++j) {
    const int8_t* row = w + j * ldw;
    int32_t s = 0;
    int8_t* panel = panels + (j / kNR) * kNR * kp;
    const std::size_t col = j % kNR;
    for (std::size_t kk = 0; kk < k; ++kk) {
      s += row[kk];
      panel[(kk / 4) * (4 * kNR) + col * 4 + (kk % 4)] = row[kk];
    }
    colsum[j] = s;
  }
  PackedHeader h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kPackedVersion;
  h.layout = kLayoutC4N16;
  h.flags = bias ? kPackedFlagBias : 0;
  h.header_bytes = kPackedHeaderBytes;
  h.n = n;
  h.k = k;
  h.kp = kp;
  h.np = np;
  h.payload_bytes = total - kPackedHeaderBytes;
  h.checksum = 0;
  std::memcpy(out, &h, sizeof h);
  h.checksum = packed_checksum(out, total);
  std::memcpy(out, &h, sizeof h);
}

PackedView view_packed(const uint8_t* buf, std::size_t size, bool verify_checksum) {
  if (size < kPackedHeaderBytes)
    bad("buffer of " + std::to_string(size) + " bytes is shorter than the " +
        std::to_string(kPackedHeaderBytes) + "-byte header (truncated?)");
  PackedHeader h;
  std::memcpy(&h, buf, sizeof h);
  if (std::memcmp(h.magic, kMagic, 8) != 0) bad("bad magic (not an edgepack packed-weight buffer)");
  if (h.version != kPackedVersion)
    bad("format version " + std::to_string(h.version) + " is not supported (this build reads " +
        std::to_string(kPackedVersion) + ")");
  if (h.layout != kLayoutC4N16) bad("unknown layout id " + std::to_string(h.layout));
  if (h.header_bytes != kPackedHeaderBytes) bad("bad header size");
  if ((h.flags & ~kPackedFlagBias) != 0) bad("unknown flags");
  for (uint8_t r : h.reserved)
    if (r != 0) bad("reserved header bytes are not zero");
  if (h.n == 0 || h.k == 0 || h.k > kMaxK || h.n >= kMaxOutputs) bad("bad shape in header");
  if (h.kp != round_up(h.k, kKP) || h.np != round_up(h.n, kNR)) bad("inconsistent padded shape");
  const std::size_t total = packed_size(h.n, h.k);
  if (h.payload_bytes != total - kPackedHeaderBytes) bad("payload size does not match the shape");
  if (size != total)
    bad("buffer holds " + std::to_string(size) + " bytes but the header describes " +
        std::to_string(total) + (size < total ? " (truncated)" : ""));
  if (verify_checksum) {
    // The checksum covers the header (with its checksum field zeroed) and the payload.
    PackedHeader z = h;
    z.checksum = 0;
    uint64_t c = packed_checksum(reinterpret_cast<const uint8_t*>(&z), sizeof z);
    c = packed_checksum(buf + kPackedHeaderBytes, total - kPackedHeaderBytes, c);
    if (c != h.checksum) bad("checksum mismatch (corrupted data)");
  }
  PackedView v;
  v.n = h.n;
  v.k = h.k;
  v.kp = h.kp;
  v.np = h.np;
  v.has_bias = (h.flags & kPackedFlagBias) != 0;
  v.colsum = reinterpret_cast<const int32_t*>(buf + kPackedHeaderBytes);
  v.scale = reinterpret_cast<const float*>(buf + kPackedHeaderBytes + 4 * v.np);
  v.bias = reinterpret_cast<const float*>(buf + kPackedHeaderBytes + 8 * v.np);
  v.panels = reinterpret_cast<const int8_t*>(buf + kPackedHeaderBytes + 12 * v.np);
  return v;
}

void unpack_weights(const PackedView& p, int8_t* w) {
  for (std::size_t j = 0; j < p.n; ++j) {
    const int8_t* panel = p.panels + (j / kNR) * kNR * p.kp;
    for (std::size_t kk = 0; kk < p.k; ++kk)
      w[j * p.k + kk] = panel[(kk / 4) * (4 * kNR) + (j % kNR) * 4 + (kk % 4)];
  }
}

}  // namespace edgepack
