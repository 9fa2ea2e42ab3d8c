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
    if (!std::isfinite(sp[r]) || !(sp[r] > 0.0f) || !std::isfinite(1.0f / sp[r]))
      throw py::value_error("row_scale must be finite and > 0, got " + std::to_string(sp[r]));
    if (zp[r] < 0 || zp[r] > 255)
      throw py::value_error("row_zero_point " + std::to_string(zp[r]) +
                            " is out of range [0, 255] for uint8 input");
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
