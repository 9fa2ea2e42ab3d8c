// Bindings for the int8 GEMM path: packing, validation, gemm_s32 / linear_int8 / linear_q.
// Every call re-validates the packed header against the buffer (cheap; the checksum is checked
// when bytes come from outside, in from_bytes), so a bad buffer is a ValueError, never a crash.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common.h"
#include "edgepack/gemm_ops.h"
#include "edgepack/sparse.h"

namespace edgepack_py {
namespace {

using edgepack::AType;
using edgepack::PackedView;

// A uint8 array for packed weights: 64-byte aligned, and for buffers of 2 MiB or more 2 MiB
// aligned with transparent huge pages requested. Large weights are streamed from DRAM on every
// call; with 4 KiB pages that stream also walks the page tables (measured: GEMV 8192^2 ~20%
// faster with huge pages on this machine).
py::array alloc_packed(std::size_t n) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t align = n >= kHuge ? kHuge : 64;
  const std::size_t bytes = (std::max<std::size_t>(n, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, bytes);
  if (!p) throw std::bad_alloc();
#if defined(__linux__)
  if (align == kHuge) madvise(p, bytes, MADV_HUGEPAGE);  // advisory: failure is harmless
#endif
  py::capsule owner(p, [](void* q) { std::free(q); });
  return py::array_t<uint8_t>({static_cast<py::ssize_t>(n)}, {static_cast<py::ssize_t>(1)},
                              static_cast<uint8_t*>(p), owner);
}

PackedView view(const py::array& buf, bool verify) {
  if (!buf.dtype().is(py::dtype::of<uint8_t>()))
    throw py::type_error("packed buffer must have dtype uint8, got " +
                         std::string(py::str(buf.dtype())));
  require_contiguous(buf, "packed buffer");
  if (buf.ndim() != 1) throw py::value_error("packed buffer must be 1-D");
  if (reinterpret_cast<std::uintptr_t>(buf.data()) % 4 != 0)
    throw py::value_error("packed buffer must be 4-byte aligned");
  return edgepack::view_packed(static_cast<const uint8_t*>(buf.data()),
                               static_cast<std::size_t>(buf.size()), verify);
}

// 2-D activations with K columns: returns M.
std::size_t check_2d(const py::array& a, const char* name, std::size_t k) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D");
  require_contiguous(a, name);
  if (static_cast<std::size_t>(a.shape(1)) != k)
    throw py::value_error(std::string(name) + " has K = " + std::to_string(a.shape(1)) +
                          " but the packed weights have K = " + std::to_string(k));
  return static_cast<std::size_t>(a.shape(0));
}

void check_outputs(std::size_t m, std::size_t n) {
  if (n != 0 && m >= edgepack::kMaxOutputs / n)
    throw py::value_error("M * N = " + std::to_string(m) + " * " + std::to_string(n) +
                          " outputs exceeds the supported maximum of 2^31");
}

AType a_type(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<uint8_t>())) return AType::kU8;
  if (a.dtype().is(py::dtype::of<int8_t>())) return AType::kS8;
  throw py::type_error(std::string(name) + " must have dtype int8 or uint8, got " +
                       std::string(py::str(a.dtype())));
}

py::array pack(const py::array& w, const py::array& scale, const py::object& bias) {
  const int8_t* wp = in_ptr<int8_t>(w, "w_q", "int8");
  if (w.ndim() != 2) throw py::value_error("w_q must be 2-D [N, K]");
  const std::size_t n = w.shape(0), k = w.shape(1);
  const float* sp = in_ptr<float>(scale, "scale", "float32");
  if (static_cast<std::size_t>(scale.size()) != n)
    throw py::value_error("scale has " + std::to_string(scale.size()) +
                          " entries, expected N = " + std::to_string(n));
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(sp[i]) || !(sp[i] > 0.0f))
      throw py::value_error("scale must be finite and > 0, got " + std::to_string(sp[i]) +
                            " at index " + std::to_string(i));
  const float* bp = nullptr;
  py::array barr;
  if (!bias.is_none()) {
    barr = bias.cast<py::array>();
    bp = in_ptr<float>(barr, "bias", "float32");
    if (static_cast<std::size_t>(barr.size()) != n)
      throw py::value_error("bias has " + std::to_string(barr.size()) +
                            " entries, expected N = " + std::to_string(n));
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(bp[i]))
        throw py::value_error("bias must be finite, got " + std::to_string(bp[i]) + " at index " +
                              std::to_string(i));
  }
  const std::size_t total = edgepack::packed_size(n, k);
  py::array out = alloc_packed(total);
  auto* op = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    edgepack::pack_weights(wp, n, k, k, sp, bp, op);
  }
  return out;
}

py::dict info(const py::array& buf, bool verify) {
  const PackedView v = view(buf, verify);
  py::dict d;
  d["n"] = v.n;
  d["k"] = v.k;
  d["kp"] = v.kp;
  d["np"] = v.np;
  d["has_bias"] = v.has_bias;
  d["layout"] = "c4n16";
  d["version"] = edgepack::kPackedVersion;
  return d;
}

py::tuple unpack(const py::array& buf) {
  const PackedView v = view(buf, false);
  py::array_t<int8_t> w({static_cast<py::ssize_t>(v.n), static_cast<py::ssize_t>(v.k)});
  edgepack::unpack_weights(v, w.mutable_data());
  py::array_t<float> s(static_cast<py::ssize_t>(v.n)), b(static_cast<py::ssize_t>(v.n));
  for (std::size_t i = 0; i < v.n; ++i) {
    s.mutable_data()[i] = v.scale[i];
    b.mutable_data()[i] = v.bias[i];
  }
  return py::make_tuple(w, s, v.has_bias ? py::object(b) : py::object(py::none()));
}

py::array gemm_s32(const py::array& a, const py::array& buf, int a_zp) {
  const PackedView v = view(buf, false);
  const AType t = a_type(a, "a");
  const std::size_t m = check_2d(a, "a", v.k);
  check_zp(t, a_zp, "a_zero_point");
  check_outputs(m, v.n);
  py::array_t<int32_t> out({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(v.n)});
  int32_t* op = out.mutable_data();
  const void* ap = a.data();
  {
    py::gil_scoped_release nogil;
    edgepack::gemm_s32_op(edgepack::gemm_kernels(), v, ap, t, m, v.k, a_zp, op);
  }
  return out;
}

py::array linear_int8(const py::array& x, const py::array& buf, bool relu) {
  const PackedView v = view(buf, false);
  const float* xp = in_ptr<float>(x, "x", "float32");
  const std::size_t m = check_2d(x, "x", v.k);
  check_outputs(m, v.n);
  py::array_t<float> out({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(v.n)});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::linear_int8_op(edgepack::gemm_kernels(), edgepack::quant_kernels(), v, xp, m, v.k,
                             relu, op);
  }
  return out;
}

// Float-output linear on uint8 activations with per-row (scale, zero point): linear_u8_op.
py::array linear_u8(const py::array& a, const py::array& buf, const py::array& row_scale,
                    const py::array& row_zp, bool relu) {
  const PackedView v = view(buf, false);
  const uint8_t* ap = in_ptr<uint8_t>(a, "a", "uint8");
  const std::size_t m = check_2d(a, "a", v.k);
  const RowQParams q = check_row_qparams(row_scale, row_zp, m, v.scale, v.n);
  const float* sp = q.scale;
  const int32_t* zp = q.zp;
  check_outputs(m, v.n);
  py::array_t<float> out({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(v.n)});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::linear_u8_op(edgepack::gemm_kernels(), v, ap, m, v.k, sp, zp, relu, op);
  }
  return out;
}

// Whole int8 Conv2d (groups = 1) in one call, for QuantConv2d's dynamic per-image path:
// x is the padded NHWC float32 input [N, H, W, C]. Per image: one uint8 asymmetric range
// (quantize_dynamic_op per row = per image, exactly _core.quantize_dynamic(x.reshape(N, -1),
// "uint8", False, True)), im2col of the uint8 image in (kh, kw, C) column order, then
// linear_u8_op with the image's (scale, zero point) on each of its rows. Same steps and kernels
// as the Python composition it replaces (bit-identical), minus the per-call Python overhead,
// which dominates at batch 1. Returns float32 [N, OH, OW, O] (NHWC memory).
py::array conv2d_u8_core(const float* xp, std::size_t n, std::size_t h, std::size_t w,
                         std::size_t c, const py::object& packed, int kh, int kw, int sh, int sw,
                         int dh, int dw, bool relu, bool nchw);

// nchw = true: x is an NCHW-shaped view of NHWC memory (a channels_last torch tensor seen by
// numpy), and the output is returned the same way, so the caller needs no permutes.
py::array conv2d_u8(const py::array& x, const py::object& buf, int kh, int kw, int sh, int sw,
                    int dh, int dw, bool relu, bool nchw) {
  require_dtype<float>(x, "x", "float32");
  if (x.ndim() != 4) throw py::value_error("x must be 4-D");
  const int ax[4] = {0, nchw ? 2 : 1, nchw ? 3 : 2, nchw ? 1 : 3};  // N, H, W, C axes
  {  // dense NHWC memory (size-1 axes may have any stride, as in torch)
    py::ssize_t want = static_cast<py::ssize_t>(sizeof(float));
    for (int i = 3; i >= 0; --i) {
      if (x.shape(ax[i]) != 1 && x.strides(ax[i]) != want)
        throw py::value_error(nchw ? "x must be channels_last (dense NHWC memory)"
                                   : "x must be C-contiguous NHWC");
      want *= x.shape(ax[i]);
    }
  }
  return conv2d_u8_core(static_cast<const float*>(x.data()), x.shape(ax[0]), x.shape(ax[1]),
                        x.shape(ax[2]), x.shape(ax[3]), buf, kh, kw, sh, sw, dh, dw, relu, nchw);
}

// The same on a raw address (torch's data_ptr(): skips building a numpy view, ~2 us at batch
// 1) of dense NHWC memory [n, h, w, c]; the caller guarantees the layout and keeps x alive.
py::array conv2d_u8_raw(std::uintptr_t addr, std::size_t n, std::size_t c, std::size_t h,
                        std::size_t w, const py::object& buf, int kh, int kw, int sh, int sw,
                        int dh, int dw, bool relu) {
  return conv2d_u8_core(raw_float_ptr(addr), n, h, w, c, buf, kh, kw, sh, sw, dh, dw, relu, true);
}

py::array conv2d_u8_core(const float* xp, std::size_t n, std::size_t h, std::size_t w,
                         std::size_t c, const py::object& packed, int kh, int kw, int sh, int sw,
                         int dh, int dw, bool relu, bool nchw) {
  // Dense (a packed uint8 buffer) or block-sparse (a PackedSparse) weights: the same per-image
  // quantization and im2col, then linear_u8_op or sparse_linear_u8_op.
  const edgepack::PackedSparse* sp = nullptr;
  PackedView v{};
  if (py::isinstance<edgepack::PackedSparse>(packed)) {
    sp = &packed.cast<const edgepack::PackedSparse&>();
    v.k = sp->header().k;
    v.n = sp->header().n;
    v.scale = sp->view().scale;
  } else {
    v = view(packed.cast<py::array>(), false);
  }
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1)
    throw py::value_error("kernel, stride and dilation must be >= 1");
  const std::size_t taps = static_cast<std::size_t>(kh) * static_cast<std::size_t>(kw);
  if (taps * c != v.k)
    throw py::value_error("kh * kw * C = " + std::to_string(taps * c) +
                          " but the packed weights have K = " + std::to_string(v.k));
  const std::size_t reach_h = static_cast<std::size_t>(dh) * (kh - 1) + 1;
  const std::size_t reach_w = static_cast<std::size_t>(dw) * (kw - 1) + 1;
  if (h < reach_h || w < reach_w) throw py::value_error("x is smaller than the kernel");
  const std::size_t oh = (h - reach_h) / sh + 1, ow = (w - reach_w) / sw + 1;
  const std::size_t rows = oh * ow, m = n * rows, img = h * w * c;
  check_outputs(m, v.n);
  float wmax = 0.0f;
  for (std::size_t i = 0; i < v.n; ++i) wmax = std::max(wmax, v.scale[i]);
  py::array_t<float> out =
      nchw ? nchw_view_of_nhwc(n, v.n, oh, ow)
           : py::array_t<float>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(oh),
                                 static_cast<py::ssize_t>(ow), static_cast<py::ssize_t>(v.n)});
  float* op = out.mutable_data();
  if (m == 0 || v.n == 0) return out;
  std::vector<uint8_t> q(n * img), a(m * v.k);
  std::vector<float> isc(n), rsc(m);
  std::vector<int32_t> izp(n), rzp(m);
  {
    py::gil_scoped_release nogil;
    // NaN/inf in x: std::domain_error -> ValueError
    edgepack::quantize_dynamic_op(edgepack::quant_kernels(), xp, q.data(), edgepack::QDType::kUInt8,
                                  false, true, n, img, isc.data(), izp.data());
    uint8_t* ap = a.data();
    for (std::size_t b = 0; b < n; ++b) {
      const uint8_t* qi = q.data() + b * img;
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox)
          for (int ky = 0; ky < kh; ++ky) {
            const uint8_t* src = qi + ((oy * sh + ky * dh) * w + ox * sw) * c;
            if (dw == 1) {  // the kw taps of one kernel row are adjacent pixels: one copy
              std::memcpy(ap, src, static_cast<std::size_t>(kw) * c);
              ap += static_cast<std::size_t>(kw) * c;
            } else {
              for (int kx = 0; kx < kw; ++kx, ap += c) std::memcpy(ap, src + kx * dw * c, c);
            }
          }
      std::fill(rsc.begin() + b * rows, rsc.begin() + (b + 1) * rows, isc[b]);
      std::fill(rzp.begin() + b * rows, rzp.begin() + (b + 1) * rows, izp[b]);
    }
  }
  float smax = 0.0f;
  for (std::size_t b = 0; b < n; ++b) {
    check_scale(isc[b], "image scale");
    smax = std::max(smax, isc[b]);
  }
  if (!std::isfinite(smax * wmax))
    throw py::value_error("input scale * weight scale overflows float32");
  {
    py::gil_scoped_release nogil;
    if (sp)
      edgepack::sparse_linear_u8_op(edgepack::sparse_kernels(), *sp, a.data(), v.k, m, rsc.data(),
                                    rzp.data(), op, relu);
    else
      edgepack::linear_u8_op(edgepack::gemm_kernels(), v, a.data(), m, v.k, rsc.data(), rzp.data(),
                             relu, op);
  }
  return out;
}

py::array linear_q(const py::array& a, const py::array& buf, float a_scale, int a_zp,
                   float out_scale, int out_zp, bool relu, const std::string& out_dtype) {
  const PackedView v = view(buf, false);
  const AType t = a_type(a, "a_q");
  const std::size_t m = check_2d(a, "a_q", v.k);
  check_zp(t, a_zp, "a_zero_point");
  check_scale(a_scale, "a_scale");
  check_scale(out_scale, "out_scale");
  edgepack::QDType od;
  if (out_dtype == "int8")
    od = edgepack::QDType::kInt8;
  else if (out_dtype == "uint8")
    od = edgepack::QDType::kUInt8;
  else
    throw py::value_error("out_dtype must be 'int8' or 'uint8', got '" + out_dtype + "'");
  if (out_zp < edgepack::qmin_of(od) || out_zp > edgepack::qmax_of(od))
    throw py::value_error("out_zero_point " + std::to_string(out_zp) + " is out of range for " +
                          out_dtype);
  // float(acc) * (a_scale * w_scale) must stay free of inf * 0 = NaN: require finite products.
  for (std::size_t i = 0; i < v.n; ++i)
    if (!std::isfinite(a_scale * v.scale[i]))
      throw py::value_error("a_scale * weight scale overflows float32");
  check_outputs(m, v.n);
  py::array out = od == edgepack::QDType::kInt8
                      ? py::array(py::dtype::of<int8_t>(),
                                  std::vector<py::ssize_t>{static_cast<py::ssize_t>(m),
                                                           static_cast<py::ssize_t>(v.n)})
                      : py::array(py::dtype::of<uint8_t>(),
                                  std::vector<py::ssize_t>{static_cast<py::ssize_t>(m),
                                                           static_cast<py::ssize_t>(v.n)});
  void* op = out.mutable_data();
  const void* ap = a.data();
  {
    py::gil_scoped_release nogil;
    edgepack::linear_q_op(edgepack::gemm_kernels(), v, ap, t, m, v.k, a_scale, a_zp, out_scale,
                          out_zp, od, relu, op);
  }
  return out;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("gemm_alloc", &alloc_packed, py::arg("nbytes"));
  m.def("gemm_pack", &pack, py::arg("w_q"), py::arg("scale"), py::arg("bias"));
  m.def("gemm_packed_info", &info, py::arg("buf"), py::arg("verify_checksum"));
  m.def("gemm_unpack", &unpack, py::arg("buf"));
  m.def("gemm_s32", &gemm_s32, py::arg("a"), py::arg("buf"), py::arg("a_zero_point"));
  m.def("linear_int8", &linear_int8, py::arg("x"), py::arg("buf"), py::arg("relu"));
  m.def("linear_q", &linear_q, py::arg("a_q"), py::arg("buf"), py::arg("a_scale"),
        py::arg("a_zero_point"), py::arg("out_scale"), py::arg("out_zero_point"), py::arg("relu"),
        py::arg("out_dtype"));
  m.def("linear_u8", &linear_u8, py::arg("a"), py::arg("buf"), py::arg("row_scale"),
        py::arg("row_zero_point"), py::arg("relu"));
  m.def("conv2d_u8_raw", &conv2d_u8_raw, py::arg("x_addr"), py::arg("n"), py::arg("c"),
        py::arg("h"), py::arg("w"), py::arg("buf"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("dh"), py::arg("dw"), py::arg("relu"));
  m.def("conv2d_u8", &conv2d_u8, py::arg("x"), py::arg("buf"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("dh"), py::arg("dw"), py::arg("relu"),
        py::arg("nchw") = false);
  m.attr("GEMM_MAX_K") = edgepack::kMaxK;
  m.attr("GEMM_MAX_OUTPUTS") = edgepack::kMaxOutputs;
}

}  // namespace edgepack_py
