// Bindings for block-sparse int8 packing and the sparse dynamic-int8 linear. Validation of
// shapes and dtypes happens here; the core validates values (scales, corrupt buffers).
#include <algorithm>
#include <cmath>
#include <string>

#include "common.h"
#include "edgepack/sparse.h"

namespace edgepack_py {
namespace {

using edgepack::PackedSparse;

PackedSparse pack_sparse(const py::array& w, const py::array& scale, const py::object& bias,
                         int block_k) {
  const int8_t* wp = in_ptr<int8_t>(w, "w_q", "int8");
  if (w.ndim() != 2)
    throw py::value_error("w_q must be 2-D [N, K], got " + std::to_string(w.ndim()) + " dims");
  const std::size_t n = static_cast<std::size_t>(w.shape(0)),
                    k = static_cast<std::size_t>(w.shape(1));
  const float* sp = in_ptr<float>(scale, "scale", "float32");
  if (static_cast<std::size_t>(scale.size()) != n)
    throw py::value_error("scale has " + std::to_string(scale.size()) +
                          " entries, w_q has N = " + std::to_string(n) + " rows");
  const float* bp = nullptr;
  py::array b;
  if (!bias.is_none()) {
    b = bias.cast<py::array>();
    bp = in_ptr<float>(b, "bias", "float32");
    if (static_cast<std::size_t>(b.size()) != n)
      throw py::value_error("bias has " + std::to_string(b.size()) +
                            " entries, w_q has N = " + std::to_string(n) + " rows");
  }
  if (block_k <= 0) throw py::value_error("block must be (1, 4), (1, 8) or (1, 16)");
  py::gil_scoped_release nogil;
  return PackedSparse::pack(wp, n, k, sp, bp, static_cast<std::size_t>(block_k));
}

py::array_t<float> sparse_linear(const py::array& x, const PackedSparse& p, bool relu) {
  const float* xp = in_ptr<float>(x, "x", "float32");
  const auto& h = p.header();
  if (x.ndim() < 1 || static_cast<std::size_t>(x.shape(x.ndim() - 1)) != h.k)
    throw py::value_error("x must have last dimension K = " + std::to_string(h.k) + ", got shape " +
                          std::string(py::str(py::tuple(py::cast(shape_of(x))))));
  std::size_t m = 1;
  for (int d = 0; d + 1 < x.ndim(); ++d) m *= static_cast<std::size_t>(x.shape(d));
  std::vector<py::ssize_t> yshape = shape_of(x);
  yshape.back() = static_cast<py::ssize_t>(h.n);
  py::array_t<float> y(yshape);
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::sparse_linear_int8_op(edgepack::sparse_kernels(), p, xp, m, yp, relu);
  }
  return y;
}

// Float-output sparse linear on uint8 activations with per-row (scale, zero point).
py::array_t<float> sparse_linear_u8(const py::array& a, const PackedSparse& p,
                                    const py::array& row_scale, const py::array& row_zp,
                                    bool relu) {
  const uint8_t* ap = in_ptr<uint8_t>(a, "a", "uint8");
  const auto& h = p.header();
  if (a.ndim() != 2 || static_cast<std::size_t>(a.shape(1)) != h.k)
    throw py::value_error("a must be 2-D [M, K] with K = " + std::to_string(h.k));
  const std::size_t m = static_cast<std::size_t>(a.shape(0));
  const RowQParams q = check_row_qparams(row_scale, row_zp, m, p.view().scale, h.n);
  const float* sp = q.scale;
  const int32_t* zp = q.zp;
  py::array_t<float> y({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(h.n)});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::sparse_linear_u8_op(edgepack::sparse_kernels(), p, ap, h.k, m, sp, zp, yp, relu);
  }
  return y;
}

}  // namespace

void bind_sparse(py::module_& m) {
  py::class_<PackedSparse>(m, "PackedSparse")
      .def_property_readonly("n", [](const PackedSparse& p) { return p.header().n; })
      .def_property_readonly("k", [](const PackedSparse& p) { return p.header().k; })
      .def_property_readonly("block_k", [](const PackedSparse& p) { return p.header().block_k; })
      .def_property_readonly("nnz", [](const PackedSparse& p) { return p.header().nnz; })
      .def_property_readonly("nnz_blocks",
                             [](const PackedSparse& p) { return p.header().nnz_blocks; })
      .def_property_readonly("version", [](const PackedSparse& p) { return p.header().version; })
      .def_property_readonly("has_bias",
                             [](const PackedSparse& p) { return (p.header().flags & 1u) != 0; })
      .def_property_readonly("nbytes", [](const PackedSparse& p) { return p.bytes().size(); })
      .def("to_bytes",
           [](const PackedSparse& p) {
             return py::bytes(reinterpret_cast<const char*>(p.bytes().data()), p.bytes().size());
           })
      .def_static(
          "from_bytes",
          [](const py::buffer& b) {
            const py::buffer_info info = b.request();
            if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
              throw py::type_error("data must be a contiguous bytes-like object");
            const auto* d = static_cast<const uint8_t*>(info.ptr);
            const std::size_t size = static_cast<std::size_t>(info.size);
            py::gil_scoped_release nogil;
            return PackedSparse::from_bytes(d, size);
          },
          py::arg("data"))
      .def("unpack",
           [](const PackedSparse& p) {
             py::array_t<int8_t> w(
                 {static_cast<py::ssize_t>(p.header().n), static_cast<py::ssize_t>(p.header().k)});
             p.unpack(w.mutable_data());
             return w;
           })
      .def("scale",
           [](const PackedSparse& p) {
             py::array_t<float> s(static_cast<py::ssize_t>(p.header().n));
             std::copy(p.view().scale, p.view().scale + p.header().n, s.mutable_data());
             return s;
           })
      .def("bias", [](const PackedSparse& p) -> py::object {
        if (!p.view().bias) return py::none();
        py::array_t<float> b(static_cast<py::ssize_t>(p.header().n));
        std::copy(p.view().bias, p.view().bias + p.header().n, b.mutable_data());
        return std::move(b);
      });
  m.def("pack_sparse", &pack_sparse, py::arg("w_q"), py::arg("scale"), py::arg("bias"),
        py::arg("block_k"));
  m.def("sparse_linear_int8", &sparse_linear, py::arg("x"), py::arg("packed"), py::arg("relu"));
  m.def("sparse_linear_u8", &sparse_linear_u8, py::arg("a"), py::arg("packed"),
        py::arg("row_scale"), py::arg("row_zero_point"), py::arg("relu"));
}

}  // namespace edgepack_py
