// Shared binding helpers: argument checks that turn bad buffers into clear Python exceptions.
// Bindings hold no math; they validate, release the GIL and call the core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "edgepack/gemm_ops.h"

namespace edgepack_py {

namespace py = pybind11;

template <class T>
inline void require_dtype(const py::array& a, const char* name, const char* want) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must have dtype " + want + ", got " +
                         std::string(py::str(a.dtype())));
}

inline void require_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
}

template <class T>
inline const T* in_ptr(const py::array& a, const char* name, const char* want) {
  require_dtype<T>(a, name, want);
  require_contiguous(a, name);
  return static_cast<const T*>(a.data());
}

// An activation zero point must fit the input's 8-bit type.
inline void check_zp(edgepack::AType t, int zp, const char* name) {
  const bool s8 = t == edgepack::AType::kS8;
  const int lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
  if (zp < lo || zp > hi)
    throw py::value_error(std::string(name) + " " + std::to_string(zp) + " is out of range [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "] for " +
                          (s8 ? "int8" : "uint8") + " input");
}

// A quantization scale must be finite, > 0 and have a finite reciprocal.
inline void check_scale(float s, const char* name) {
  if (!std::isfinite(s) || !(s > 0.0f) || !std::isfinite(1.0f / s))
    throw py::value_error(std::string(name) + " must be finite and > 0, got " + std::to_string(s));
}

// A raw address (torch's data_ptr()) of float32 memory the caller keeps alive.
inline const float* raw_float_ptr(std::uintptr_t addr) {
  if (addr == 0 || addr % alignof(float) != 0)
    throw py::value_error("x address must be non-null and float-aligned");
  return reinterpret_cast<const float*>(addr);
}

// float32 [n, c, h, w] as an NCHW-shaped view of NHWC memory: the layout of a channels_last
// torch tensor, so NHWC ops chain without permutes.
inline py::array_t<float> nchw_view_of_nhwc(std::size_t n, std::size_t c, std::size_t h,
                                            std::size_t w) {
  const auto sn = static_cast<py::ssize_t>(n), sc = static_cast<py::ssize_t>(c),
             sy = static_cast<py::ssize_t>(h), sx = static_cast<py::ssize_t>(w);
  const py::ssize_t f = sizeof(float);
  return py::array_t<float>({sn, sc, sy, sx}, {sy * sx * sc * f, f, sx * sc * f, sc * f});
}

// Per-row uint8 quantization of an activation with m rows: row_scale (float32, finite, > 0, a
// finite reciprocal) and row_zero_point (int32 in [0, 255]), 1-D with one entry per row, and
// max(row_scale) * max(w_scale[0..n)) finite (the epilogue multiplies them). Shared by the dense
// and sparse *_u8 linears so both refuse the same inputs with the same messages.
struct RowQParams {
  const float* scale;
  const int32_t* zp;
};
inline RowQParams check_row_qparams(const py::array& row_scale, const py::array& row_zp,
                                    std::size_t m, const float* w_scale, std::size_t n) {
  const float* sp = in_ptr<float>(row_scale, "row_scale", "float32");
  const int32_t* zp = in_ptr<int32_t>(row_zp, "row_zero_point", "int32");
  if (row_scale.ndim() != 1 || static_cast<std::size_t>(row_scale.size()) != m ||
      row_zp.ndim() != 1 || static_cast<std::size_t>(row_zp.size()) != m)
    throw py::value_error("row_scale and row_zero_point must be 1-D with one entry per row of a");
  float smax = 0.0f, wmax = 0.0f;
  for (std::size_t r = 0; r < m; ++r) {
    check_scale(sp[r], "row_scale");
    check_zp(edgepack::AType::kU8, zp[r], "row_zero_point");
    smax = std::max(smax, sp[r]);
  }
  for (std::size_t i = 0; i < n; ++i) wmax = std::max(wmax, w_scale[i]);
  if (!std::isfinite(smax * wmax))
    throw py::value_error("row_scale * weight scale overflows float32");
  return {sp, zp};
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

void bind_cpu(py::module_& m);
void bind_quant(py::module_& m);
void bind_gemm(py::module_& m);
void bind_sparse(py::module_& m);
void bind_pool(py::module_& m);

}  // namespace edgepack_py
