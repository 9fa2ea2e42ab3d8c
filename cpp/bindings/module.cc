// edgepack._core: pybind11 only. Importing it validates EDGEPACK_ISA, so a bad value is an
// ImportError with a clear message, never a silent fallback.
#include "common.h"
#include "edgepack/cpu.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgepack native kernels (torch-free C++ core)";
  try {
    edgepack::selected_isa();
  } catch (const std::exception& e) {
    throw pybind11::import_error(e.what());
  }
  edgepack_py::bind_cpu(m);
  edgepack_py::bind_quant(m);
  edgepack_py::bind_gemm(m);
  edgepack_py::bind_sparse(m);
  edgepack_py::bind_pool(m);
}
