// Scalar reference for quantization: the spec every ISA kernel must match bit for bit.
// Clamping happens in float before rounding (bounds are integers, so this equals clamping
// after rounding) which keeps +-inf and huge values saturating instead of wrapping.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels_internal.h"

namespace edgepack {
namespace ref {
namespace {

template <class T>
bool quantize_t(const float* x, T* q, std::size_t n, float inv_scale, int32_t zp, int32_t qmin,
                int32_t qmax) {
  const float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    float v = x[i] * inv_scale;
    if (std::isnan(v)) {  // report, and keep the cast below defined
      nan = true;
      v = 0.0f;
    }
    v = std::min(std::max(v, lo), hi);
    q[i] = static_cast<T>(static_cast<int32_t>(std::nearbyint(v)) + zp);
  }
  return nan;
}

template <class T>
bool quantize_vec_t(const float* x, T* q, std::size_t n, const float* inv_scale,
                    const int32_t* zp, int32_t qmin, int32_t qmax) {
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) nan |= quantize_t(x + i, q + i, 1, inv_scale[i], zp[i], qmin, qmax);
  return nan;
}

template <class T>
void dequantize_t(const T* q, float* x, std::size_t n, float scale, int32_t zp) {
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(int32_t{q[i]} - zp) * scale;
}

template <class T>
void dequantize_vec_t(const T* q, float* x, std::size_t n, const float* scale, const int32_t* zp) {
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(int32_t{q[i]} - zp[i]) * scale[i];
}

}  // namespace

bool quantize_s8(const float* x, void* q, std::size_t n, float inv_scale, int32_t zp) {
  return quantize_t(x, static_cast<int8_t*>(q), n, inv_scale, zp, -128, 127);
}
bool quantize_u8(const float* x, void* q, std::size_t n, float inv_scale, int32_t zp) {
  return quantize_t(x, static_cast<uint8_t*>(q), n, inv_scale, zp, 0, 255);
}
static bool quantize_vec_s8(const float* x, void* q, std::size_t n, const float* s,
                            const int32_t* zp) {
  return quantize_vec_t(x, static_cast<int8_t*>(q), n, s, zp, -128, 127);
}
static bool quantize_vec_u8(const float* x, void* q, std::size_t n, const float* s,
                            const int32_t* zp) {
  return quantize_vec_t(x, static_cast<uint8_t*>(q), n, s, zp, 0, 255);
}
static void dequantize_s8(const void* q, float* x, std::size_t n, float s, int32_t zp) {
  dequantize_t(static_cast<const int8_t*>(q), x, n, s, zp);
}
static void dequantize_u8(const void* q, float* x, std::size_t n, float s, int32_t zp) {
  dequantize_t(static_cast<const uint8_t*>(q), x, n, s, zp);
}
static void dequantize_vec_s8(const void* q, float* x, std::size_t n, const float* s,
                              const int32_t* zp) {
  dequantize_vec_t(static_cast<const int8_t*>(q), x, n, s, zp);
}
static void dequantize_vec_u8(const void* q, float* x, std::size_t n, const float* s,
                              const int32_t* zp) {
  dequantize_vec_t(static_cast<const uint8_t*>(q), x, n, s, zp);
}

bool minmax(const float* x, std::size_t n, float* mn, float* mx) {
  float lo = x[0], hi = x[0];
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *mn = lo;
  *mx = hi;
  return nan;
}

}  // namespace ref

QuantKernels quant_kernels_ref() {
  return QuantKernels{Isa::kScalar,         ref::quantize_s8,       ref::quantize_u8,
                      ref::quantize_vec_s8, ref::quantize_vec_u8,   ref::dequantize_s8,
                      ref::dequantize_u8,   ref::dequantize_vec_s8, ref::dequantize_vec_u8,
                      ref::minmax};
}

QParams qparams_from_minmax(float mn, float mx, QDType dtype, bool symmetric) {
  if (!std::isfinite(mn) || !std::isfinite(mx))
    throw std::invalid_argument("cannot choose quantization parameters for non-finite values (min=" +
                                std::to_string(mn) + ", max=" + std::to_string(mx) + ")");
  const double lo = std::min<double>(mn, 0.0), hi = std::max<double>(mx, 0.0);
  const int32_t qmin = qmin_of(dtype), qmax = qmax_of(dtype);
  double scale;
  int32_t zp;
  if (symmetric) {
    scale = std::max(-lo, hi) / 127.0;
    zp = dtype == QDType::kInt8 ? 0 : 128;
  } else {
    scale = (hi - lo) / static_cast<double>(qmax - qmin);
    zp = 0;  // set below, once scale is final
  }
  float s = static_cast<float>(scale);
  if (!std::isfinite(s))
    throw std::invalid_argument("value range too large for a float32 scale");
  if (s == 0.0f) s = 1.0f;
  s = std::max(s, FLT_MIN);
  if (!symmetric) {
    const double z = static_cast<double>(qmin) - std::nearbyint(lo / static_cast<double>(s));
    zp = static_cast<int32_t>(std::min<double>(std::max<double>(z, qmin), qmax));
  }
  return QParams{s, zp};
}

}  // namespace edgepack
