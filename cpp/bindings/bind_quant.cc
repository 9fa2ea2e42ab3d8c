// Bindings for quantize / dequantize / min-max / dynamic quantization.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "common.h"
#include "edgepack/quant.h"

namespace edgepack_py {
namespace {

using edgepack::QDType;

QDType parse_dtype(const std::string& s) {
  if (s == "int8") return QDType::kInt8;
  if (s == "uint8") return QDType::kUInt8;
  throw py::value_error("dtype must be 'int8' or 'uint8', got '" + s + "'");
}

QDType dtype_of_q(const py::array& q) {
  if (q.dtype().is(py::dtype::of<int8_t>())) return QDType::kInt8;
  if (q.dtype().is(py::dtype::of<uint8_t>())) return QDType::kUInt8;
  throw py::type_error("q must have dtype int8 or uint8, got " + std::string(py::str(q.dtype())));
}

struct Layout {
  std::size_t outer = 1, channels = 1, inner = 1;
};

// Split the shape into [outer, channels, inner] around `axis` (axis < 0: per tensor).
Layout layout_of(const py::array& a, int axis, std::size_t nparams) {
  Layout l;
  const int nd = static_cast<int>(a.ndim());
  if (axis < 0) {
    l.inner = static_cast<std::size_t>(a.size());
    if (nparams != 1)
      throw py::value_error("per-tensor quantization takes exactly one scale and zero_point, got " +
                            std::to_string(nparams));
    return l;
  }
  if (axis >= nd)
    throw py::value_error("axis " + std::to_string(axis) + " is out of range for an array with " +
                          std::to_string(nd) + " dimensions");
  for (int d = 0; d < axis; ++d) l.outer *= a.shape(d);
  l.channels = a.shape(axis);
  for (int d = axis + 1; d < nd; ++d) l.inner *= a.shape(d);
  if (nparams != l.channels)
    throw py::value_error("scale/zero_point have " + std::to_string(nparams) +
                          " entries but axis " + std::to_string(axis) + " has length " +
                          std::to_string(l.channels));
  return l;
}

void check_params(const py::array& scale, const py::array& zp, QDType dt) {
  const float* s = in_ptr<float>(scale, "scale", "float32");
  const int32_t* z = in_ptr<int32_t>(zp, "zero_point", "int32");
  if (scale.size() != zp.size())
    throw py::value_error("scale and zero_point must have the same length");
  for (py::ssize_t i = 0; i < scale.size(); ++i) {
    if (!std::isfinite(s[i]) || !(s[i] > 0.0f) || !std::isfinite(1.0f / s[i]))
      throw py::value_error("scale must be finite and > 0 (with a finite reciprocal), got " +
                            std::to_string(s[i]) + " at index " + std::to_string(i));
    if (z[i] < edgepack::qmin_of(dt) || z[i] > edgepack::qmax_of(dt))
      throw py::value_error("zero_point " + std::to_string(z[i]) + " is out of range for " +
                            (dt == QDType::kInt8 ? "int8" : "uint8"));
  }
}

// The output array: a fresh one, or `out` after checking it can take the result in place.
py::array output(const py::object& out, const py::array& like, const py::dtype& dt,
                 const char* dtname) {
  if (out.is_none()) return py::array(dt, shape_of(like));
  if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy array or None");
  py::array o = py::reinterpret_borrow<py::array>(out);
  if (!o.dtype().is(dt))
    throw py::type_error(std::string("out must have dtype ") + dtname + ", got " +
                         std::string(py::str(o.dtype())));
  if (o.ndim() != like.ndim() || !std::equal(o.shape(), o.shape() + o.ndim(), like.shape()))
    throw py::value_error("out must have the same shape as the input");
  require_contiguous(o, "out");
  if (!o.writeable()) throw py::value_error("out is read-only");
  if (o.size() > 0 && o.data() == like.data())
    throw py::value_error("out must not share memory with the input");
  return o;
}

// Per-tensor parameters as plain numbers (the fast path: no parameter arrays to build).
float checked_scale(double scale) {
  const float s = static_cast<float>(scale);
  if (!std::isfinite(s) || !(s > 0.0f) || !std::isfinite(1.0f / s))
    throw py::value_error("scale must be finite and > 0 (with a finite float32 reciprocal), got " +
                          std::to_string(scale));
  return s;
}

void check_zp(long long zp, QDType dt) {
  if (zp < edgepack::qmin_of(dt) || zp > edgepack::qmax_of(dt))
    throw py::value_error("zero_point " + std::to_string(zp) + " is out of range for " +
                          (dt == QDType::kInt8 ? "int8 [-128, 127]" : "uint8 [0, 255]"));
}

py::array quantize_tensor(const py::array& x, double scale, long long zero_point,
                          const std::string& dtype, const py::object& out) {
  const QDType dt = parse_dtype(dtype);
  const float* xp = in_ptr<float>(x, "x", "float32");
  const float s = checked_scale(scale);
  check_zp(zero_point, dt);
  const int32_t z = static_cast<int32_t>(zero_point);
  py::array q = dt == QDType::kInt8 ? output(out, x, py::dtype::of<int8_t>(), "int8")
                                    : output(out, x, py::dtype::of<uint8_t>(), "uint8");
  void* qp = q.mutable_data();
  const std::size_t n = static_cast<std::size_t>(x.size());
  {
    py::gil_scoped_release nogil;
    edgepack::quantize_op(edgepack::quant_kernels(), xp, qp, dt, 1, 1, n, &s, &z);
  }
  return q;
}

py::array dequantize_tensor(const py::array& q, double scale, long long zero_point,
                            const py::object& out) {
  const QDType dt = dtype_of_q(q);
  require_contiguous(q, "q");
  const float s = checked_scale(scale);
  check_zp(zero_point, dt);
  const int32_t z = static_cast<int32_t>(zero_point);
  py::array x = output(out, q, py::dtype::of<float>(), "float32");
  float* xp = static_cast<float*>(x.mutable_data());
  const void* qp = q.data();
  const std::size_t n = static_cast<std::size_t>(q.size());
  {
    py::gil_scoped_release nogil;
    edgepack::dequantize_op(edgepack::quant_kernels(), qp, xp, dt, 1, 1, n, &s, &z);
  }
  return x;
}

// Raw-address variants for CPU torch tensors (torch has no buffer protocol, and .numpy() plus
// torch.from_numpy() cost microseconds per call). Internal: the Python wrapper has checked that
// the tensor is a contiguous CPU tensor of this shape and dtype, and keeps it alive. The output
// is a new numpy array (numpy's allocator reuses memory; torch's returns big blocks to the OS
// and page-faults on every fresh tensor).
std::vector<py::ssize_t> tuple_shape(const py::tuple& t) {
  std::vector<py::ssize_t> shape;
  shape.reserve(t.size());
  for (const auto& d : t) shape.push_back(d.cast<py::ssize_t>());
  return shape;
}

py::array quantize_raw(std::uintptr_t x, const py::tuple& shape_t, double scale,
                       long long zero_point, const std::string& dtype) {
  const QDType dt = parse_dtype(dtype);
  const float s = checked_scale(scale);
  check_zp(zero_point, dt);
  const int32_t z = static_cast<int32_t>(zero_point);
  const std::vector<py::ssize_t> shape = tuple_shape(shape_t);
  py::array q = dt == QDType::kInt8 ? py::array(py::dtype::of<int8_t>(), shape)
                                    : py::array(py::dtype::of<uint8_t>(), shape);
  const std::size_t n = static_cast<std::size_t>(q.size());
  void* qp = q.mutable_data();
  if (n != 0) {
    py::gil_scoped_release nogil;
    edgepack::quantize_op(edgepack::quant_kernels(), reinterpret_cast<const float*>(x), qp, dt, 1,
                          1, n, &s, &z);
  }
  return q;
}

py::array dequantize_raw(std::uintptr_t q, const py::tuple& shape_t, double scale,
                         long long zero_point, const std::string& dtype) {
  const QDType dt = parse_dtype(dtype);
  const float s = checked_scale(scale);
  check_zp(zero_point, dt);
  const int32_t z = static_cast<int32_t>(zero_point);
  py::array_t<float> x(tuple_shape(shape_t));
  const std::size_t n = static_cast<std::size_t>(x.size());
  float* xp = x.mutable_data();
  if (n != 0) {
    py::gil_scoped_release nogil;
    edgepack::dequantize_op(edgepack::quant_kernels(), reinterpret_cast<const void*>(q), xp, dt, 1,
                            1, n, &s, &z);
  }
  return x;
}

py::array quantize(const py::array& x, const py::array& scale, const py::array& zp, int axis,
                   const std::string& dtype, const py::object& out) {
  const QDType dt = parse_dtype(dtype);
  const float* xp = in_ptr<float>(x, "x", "float32");
  check_params(scale, zp, dt);
  const Layout l = layout_of(x, axis, static_cast<std::size_t>(scale.size()));
  py::array q = dt == QDType::kInt8 ? output(out, x, py::dtype::of<int8_t>(), "int8")
                                    : output(out, x, py::dtype::of<uint8_t>(), "uint8");
  void* qp = q.mutable_data();
  const float* sp = static_cast<const float*>(scale.data());
  const int32_t* zpp = static_cast<const int32_t*>(zp.data());
  {
    py::gil_scoped_release nogil;
    edgepack::quantize_op(edgepack::quant_kernels(), xp, qp, dt, l.outer, l.channels, l.inner, sp,
                          zpp);
  }
  return q;
}

py::array dequantize(const py::array& q, const py::array& scale, const py::array& zp, int axis,
                     const py::object& out) {
  const QDType dt = dtype_of_q(q);
  require_contiguous(q, "q");
  check_params(scale, zp, dt);
  const Layout l = layout_of(q, axis, static_cast<std::size_t>(scale.size()));
  py::array x = output(out, q, py::dtype::of<float>(), "float32");
  float* xp = static_cast<float*>(x.mutable_data());
  const void* qp = q.data();
  const float* sp = static_cast<const float*>(scale.data());
  const int32_t* zpp = static_cast<const int32_t*>(zp.data());
  {
    py::gil_scoped_release nogil;
    edgepack::dequantize_op(edgepack::quant_kernels(), qp, xp, dt, l.outer, l.channels, l.inner, sp,
                            zpp);
  }
  return x;
}

py::tuple minmax(const py::array& x) {
  const float* xp = in_ptr<float>(x, "x", "float32");
  if (x.size() == 0) throw py::value_error("x is empty: min/max is undefined");
  float mn, mx;
  {
    py::gil_scoped_release nogil;
    edgepack::minmax_op(edgepack::quant_kernels(), xp, static_cast<std::size_t>(x.size()), &mn,
                        &mx);
  }
  return py::make_tuple(mn, mx);
}

// Per-channel (scale, zero_point) along `axis` from each channel's min/max.
py::tuple choose_qparams_axis(const py::array& x, int axis, const std::string& dtype,
                              bool symmetric) {
  const QDType dt = parse_dtype(dtype);
  const float* xp = in_ptr<float>(x, "x", "float32");
  if (axis < 0 || axis >= x.ndim())
    throw py::value_error("axis " + std::to_string(axis) + " is out of range");
  Layout l;
  for (int d = 0; d < axis; ++d) l.outer *= x.shape(d);
  l.channels = x.shape(axis);
  for (int d = axis + 1; d < x.ndim(); ++d) l.inner *= x.shape(d);
  std::vector<float> mn(l.channels), mx(l.channels);
  {
    py::gil_scoped_release nogil;
    edgepack::minmax_channels_op(edgepack::quant_kernels(), xp, l.outer, l.channels, l.inner,
                                 mn.data(), mx.data());
  }
  py::array_t<float> scale(static_cast<py::ssize_t>(l.channels));
  py::array_t<int32_t> zp(static_cast<py::ssize_t>(l.channels));
  float* sp = scale.mutable_data();
  int32_t* zpp = zp.mutable_data();
  for (std::size_t c = 0; c < l.channels; ++c) {
    const auto p = edgepack::qparams_from_minmax(mn[c], mx[c], dt, symmetric);
    sp[c] = p.scale;
    zpp[c] = p.zero_point;
  }
  return py::make_tuple(scale, zp);
}

py::tuple qparams(float mn, float mx, const std::string& dtype, bool symmetric) {
  const auto p = edgepack::qparams_from_minmax(mn, mx, parse_dtype(dtype), symmetric);
  return py::make_tuple(p.scale, p.zero_point);
}

// Rows are the last dimension; per_row gives one (scale, zp) per row.
py::tuple quantize_dynamic(const py::array& x, const std::string& dtype, bool symmetric,
                           bool per_row) {
  const QDType dt = parse_dtype(dtype);
  const float* xp = in_ptr<float>(x, "x", "float32");
  if (per_row && x.ndim() < 1) throw py::value_error("per_row needs at least one dimension");
  const std::size_t cols = x.ndim() == 0 ? 1 : static_cast<std::size_t>(x.shape(x.ndim() - 1));
  std::size_t rows = 1;  // product of the leading dimensions (rows may be empty)
  for (int d = 0; d + 1 < x.ndim(); ++d) rows *= static_cast<std::size_t>(x.shape(d));
  std::vector<py::ssize_t> pshape;
  if (per_row) pshape.assign(x.shape(), x.shape() + x.ndim() - 1);
  py::array q = dt == QDType::kInt8 ? py::array(py::dtype::of<int8_t>(), shape_of(x))
                                    : py::array(py::dtype::of<uint8_t>(), shape_of(x));
  py::array_t<float> scale(pshape);
  py::array_t<int32_t> zp(pshape);
  void* qp = q.mutable_data();
  float* sp = scale.mutable_data();
  int32_t* zpp = zp.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::quantize_dynamic_op(edgepack::quant_kernels(), xp, qp, dt, symmetric, per_row, rows,
                                  cols, sp, zpp);
  }
  return py::make_tuple(q, scale, zp);
}

}  // namespace

void bind_quant(py::module_& m) {
  m.def("quantize", &quantize, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis"), py::arg("dtype"), py::arg("out") = py::none());
  m.def("dequantize", &dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
        py::arg("axis"), py::arg("out") = py::none());
  m.def("quantize_raw", &quantize_raw, py::arg("x_addr"), py::arg("shape"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype"));
  m.def("dequantize_raw", &dequantize_raw, py::arg("q_addr"), py::arg("shape"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype"));
  m.def("quantize_tensor", &quantize_tensor, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("dtype"), py::arg("out") = py::none());
  m.def("dequantize_tensor", &dequantize_tensor, py::arg("q"), py::arg("scale"),
        py::arg("zero_point"), py::arg("out") = py::none());
  m.def("minmax", &minmax, py::arg("x"));
  m.def("choose_qparams_axis", &choose_qparams_axis, py::arg("x"), py::arg("axis"),
        py::arg("dtype"), py::arg("symmetric"));
  m.def("qparams_from_minmax", &qparams, py::arg("mn"), py::arg("mx"), py::arg("dtype"),
        py::arg("symmetric"));
  m.def("quantize_dynamic", &quantize_dynamic, py::arg("x"), py::arg("dtype"), py::arg("symmetric"),
        py::arg("per_row"));
}

}  // namespace edgepack_py
