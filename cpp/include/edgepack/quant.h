// int8/uint8 quantization: the spec (scalar reference), the per-ISA kernel table, and the
// threaded operations the bindings call.
//
// Spec (all ISAs bit-identical):
//   quantize:   q = clamp(rint(x * inv_scale) + zp, qmin, qmax), inv_scale = 1.0f / scale in
//               float32, rint = round half to even. Computed as rint(clamp(x * inv_scale,
//               qmin - zp, qmax - zp)) + zp, which is the same for every finite and infinite x
//               because the bounds are integers. NaN is reported (has_nan), never quantized.
//   dequantize: x = float(q - zp) * scale.
//   qparams:    see qparams_from_minmax().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "edgepack/cpu.h"

namespace edgepack {

enum class QDType : int { kInt8 = 0, kUInt8 = 1 };

inline int32_t qmin_of(QDType t) { return t == QDType::kInt8 ? -128 : 0; }
inline int32_t qmax_of(QDType t) { return t == QDType::kInt8 ? 127 : 255; }

// ---- kernel signatures (contiguous data, no threads, no allocation) -------------------------
// Returns true if any x is NaN (outputs are then unspecified).
using QuantizeFn = bool (*)(const float* x, void* q, std::size_t n, float inv_scale, int32_t zp);
// Per-element parameters: inv_scale[i], zp[i] apply to x[i] (a row along a per-channel axis).
using QuantizeVecFn = bool (*)(const float* x, void* q, std::size_t n, const float* inv_scale,
                               const int32_t* zp);
using DequantizeFn = void (*)(const void* q, float* x, std::size_t n, float scale, int32_t zp);
using DequantizeVecFn = void (*)(const void* q, float* x, std::size_t n, const float* scale,
                                 const int32_t* zp);
// min/max over x; returns true if any x is NaN (min/max then unspecified). n >= 1.
using MinMaxFn = bool (*)(const float* x, std::size_t n, float* mn, float* mx);

struct QuantKernels {
  Isa isa;
  QuantizeFn quantize_s8;
  QuantizeFn quantize_u8;
  QuantizeVecFn quantize_vec_s8;
  QuantizeVecFn quantize_vec_u8;
  DequantizeFn dequantize_s8;
  DequantizeFn dequantize_u8;
  DequantizeVecFn dequantize_vec_s8;
  DequantizeVecFn dequantize_vec_u8;
  MinMaxFn minmax;
};

// Every compiled-in table for this architecture (reference first), and the dispatched one.
const std::vector<QuantKernels>& quant_kernel_list();
const QuantKernels& quant_kernels();

// ---- quantization parameters ----------------------------------------------------------------
struct QParams {
  float scale;
  int32_t zero_point;
};
// From an observed range [mn, mx] (finite). The range is first widened to include 0.
//   symmetric:  amax = max(-mn, mx); scale = amax / 127; zp = 0 (int8) or 128 (uint8).
//   asymmetric: scale = (mx - mn) / (qmax - qmin); zp = clamp(qmin - rint(mn / scale)).
// A zero range gives scale 1. scale is at least FLT_MIN so 1/scale stays finite.
// Throws std::invalid_argument for non-finite inputs or a range too large for float32.
QParams qparams_from_minmax(float mn, float mx, QDType dtype, bool symmetric);

// ---- threaded operations (validated arguments; used by the bindings) -------------------------
// Layout [outer, channels, inner]; per-tensor is channels == 1. scale/zp have `channels` entries.
// Throw std::domain_error on NaN input.
void quantize_op(const QuantKernels& k, const float* x, void* q, QDType dtype, std::size_t outer,
                 std::size_t channels, std::size_t inner, const float* scale, const int32_t* zp);
void dequantize_op(const QuantKernels& k, const void* q, float* x, QDType dtype, std::size_t outer,
                   std::size_t channels, std::size_t inner, const float* scale, const int32_t* zp);
// Global min/max of x[0..n) (n >= 1); throws std::domain_error on NaN.
void minmax_op(const QuantKernels& k, const float* x, std::size_t n, float* mn, float* mx);
// Per-channel min/max over layout [outer, channels, inner]: mn/mx receive `channels` entries
// (0 for a channel with no elements). Throws std::domain_error on NaN.
void minmax_channels_op(const QuantKernels& k, const float* x, std::size_t outer,
                        std::size_t channels, std::size_t inner, float* mn, float* mx);
// Dynamic quantization of `rows` rows of `cols` values: per row (per_row) or one set for all.
// scale/zp receive `rows` entries (per_row) or 1 entry. Throws std::domain_error on NaN/inf.
void quantize_dynamic_op(const QuantKernels& k, const float* x, void* q, QDType dtype,
                         bool symmetric, bool per_row, std::size_t rows, std::size_t cols,
                         float* scale, int32_t* zp);

// ---- scalar reference (the spec), also exported for tests -----------------------------------
namespace ref {
bool quantize_s8(const float* x, void* q, std::size_t n, float inv_scale, int32_t zp);
bool quantize_u8(const float* x, void* q, std::size_t n, float inv_scale, int32_t zp);
bool minmax(const float* x, std::size_t n, float* mn, float* mx);
}  // namespace ref

}  // namespace edgepack
