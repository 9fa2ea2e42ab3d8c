// Shared binding helpers: argument checks that turn bad buffers into clear Python exceptions.
// Bindings hold no math; they validate, release the GIL and call the core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

void bind_cpu(py::module_& m);
void bind_quant(py::module_& m);
void bind_gemm(py::module_& m);
void bind_sparse(py::module_& m);
void bind_pool(py::module_& m);

}  // namespace edgepack_py
