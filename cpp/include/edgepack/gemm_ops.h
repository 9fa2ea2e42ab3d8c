// int8 GEMM operations on packed weights: the self-describing packed buffer, and the threaded
// driver with fused epilogues that the bindings call. Layout and micro-kernel contract: gemm.h.
//
// Packed buffer (little-endian, as on every target: x86-64 and aarch64):
//   [0, 128)            PackedHeader
//   colsum int32[Np]    sum_k w[n][k] (0 for padding columns): the zero-point correction
//   scale  f32[Np]      per-output-channel weight scale (1 for padding columns)
//   bias   f32[Np]      bias (0 where absent or padding)
//   panels int8[Np*Kp]  the c4n16 panels of gemm.h, panel p at offset p * 16 * Kp
// 128 + 12 * Np is a multiple of 64 (Np is a multiple of 16), so panels start 64-byte aligned
// relative to the buffer. The checksum (FNV-1a, 64-bit words) covers the whole buffer, read with
// the checksum field zeroed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "edgepack/gemm.h"
#include "edgepack/quant.h"

namespace edgepack {

constexpr uint32_t kPackedVersion = 1;
constexpr uint32_t kLayoutC4N16 = 1;
constexpr uint32_t kPackedFlagBias = 1;
constexpr std::size_t kPackedHeaderBytes = 128;
// Upper bound on M * N outputs for one call (and on N): keeps index math and allocations sane.
constexpr std::size_t kMaxOutputs = std::size_t{1} << 31;

struct PackedHeader {
  char magic[8];  // "EPGEMM\r\n": the \r\n catches text-mode mangling
  uint32_t version;
  uint32_t layout;
  uint32_t flags;
  uint32_t header_bytes;
  uint64_t n, k, kp, np;
  uint64_t payload_bytes;
  uint64_t checksum;
  uint8_t reserved[128 - 8 - 16 - 48];  // zero
};
static_assert(sizeof(PackedHeader) == kPackedHeaderBytes, "header is 128 bytes");

// A validated view of a packed buffer.
struct PackedView {
  std::size_t n = 0, k = 0, kp = 0, np = 0;
  bool has_bias = false;
  const int32_t* colsum = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;  // all zeros when !has_bias
  const int8_t* panels = nullptr;
};

// Bytes of the packed buffer for w[n][k]. Throws std::invalid_argument for n == 0, k == 0,
// k > kMaxK or n >= kMaxOutputs.
std::size_t packed_size(std::size_t n, std::size_t k);
// Packs w (row-major [n][k], row stride ldw), scale[n], optional bias[n] (nullptr) into out,
// which holds packed_size(n, k) bytes. Scales and bias must already be validated (finite).
void pack_weights(const int8_t* w, std::size_t n, std::size_t k, std::size_t ldw,
                  const float* scale, const float* bias, uint8_t* out);
// Checks the header against the buffer size (and, with verify_checksum, the payload checksum)
// before any byte is trusted. Throws std::invalid_argument naming what is wrong.
PackedView view_packed(const uint8_t* buf, std::size_t size, bool verify_checksum);
// FNV-1a (64-bit words), continuing from h: header (checksum field zeroed) then payload.
uint64_t packed_checksum(const uint8_t* data, std::size_t bytes,
                         uint64_t h = 1469598103934665603ull);
// Unpacks back to int8 w[n][k] (tests and inspection).
void unpack_weights(const PackedView& p, int8_t* w);

// How A arrives: uint8 values, or int8 values (read as uint8 a + 128 with zero point zp + 128).
enum class AType : int { kU8 = 0, kS8 = 1 };

// out[m][n] = sum_k (a[m][k] - a_zp) * w[n][k], int32. Row stride lda (elements), out is [m][N].
void gemm_s32_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at,
                 std::size_t m, std::size_t lda, int32_t a_zp, int32_t* out);

// Dynamic int8 linear (the spec: python/edgepack/reference.py linear_int8_ref): x float32 [m][K]
// (row stride ldx), per-row uint8 asymmetric quantization, GEMM, fp32 epilogue. out is [m][N].
// Throws std::domain_error if x holds NaN or inf.
void linear_int8_op(const GemmKernels& gk, const QuantKernels& qk, const PackedView& p,
                    const float* x, std::size_t m, std::size_t ldx, bool relu, float* out);

// Float-output linear on activations already quantized to uint8 (edgepack.nn's static layers and
// its im2col convs): row r of a [m][K] (row stride lda) has its own (row_scale[r], row_zp[r]);
// y = float(sum_k (a - row_zp[r]) * w) * float(row_scale[r] * w_scale[n]) (+ bias) (relu), the
// epilogue of linear_int8_op. out is [m][N]. Scales must keep row_scale * w_scale finite.
void linear_u8_op(const GemmKernels& gk, const PackedView& p, const uint8_t* a, std::size_t m,
                  std::size_t lda, const float* row_scale, const int32_t* row_zp, bool relu,
                  float* out);

// Static int8 linear (linear_q_ref): a int8/uint8 [m][K] with per-tensor (a_scale, a_zp), output
// requantized to out_dtype with (out_scale, out_zp). out is [m][N] bytes.
void linear_q_op(const GemmKernels& gk, const PackedView& p, const void* a, AType at,
                 std::size_t m, std::size_t lda, float a_scale, int32_t a_zp, float out_scale,
                 int32_t out_zp, QDType out_dtype, bool relu, void* out);

}  // namespace edgepack
