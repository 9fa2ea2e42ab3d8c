// Binding for max pooling on NHWC float32 memory (edgepack/pool.h), for edgepack.nn.MaxPool2d.
#include <cstdint>
#include <string>

#include "common.h"
#include "edgepack/pool.h"

namespace edgepack_py {
namespace {

// x_addr: a torch data_ptr() of dense NHWC memory [n, h, w, c] (a channels_last tensor), kept
// alive by the caller. Returns float32 [n, c, oh, ow] as an NCHW-shaped view of NHWC memory
// (nchw_view_of_nhwc), so pooling chains never permute.
py::array maxpool2d_nhwc_raw(std::uintptr_t addr, std::size_t n, std::size_t c, std::size_t h,
                             std::size_t w, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                             int dw, bool ceil_mode) {
  const float* xp = raw_float_ptr(addr);
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1)
    throw py::value_error("kernel_size, stride and dilation must be >= 1");
  if (ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw)
    throw py::value_error("padding must be >= 0 and at most half the kernel size");
  const std::size_t oh = edgepack::pool_out_size(h, kh, sh, ph, dh, ceil_mode);
  const std::size_t ow = edgepack::pool_out_size(w, kw, sw, pw, dw, ceil_mode);
  if (oh == 0 || ow == 0)
    throw py::value_error("max_pool2d: input " + std::to_string(h) + "x" + std::to_string(w) +
                          " is too small for the window");
  py::array_t<float> out = nchw_view_of_nhwc(n, c, oh, ow);
  if (n == 0 || c == 0) return out;
  const edgepack::Pool2dShape s{n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw};
  float* yp = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgepack::maxpool2d_nhwc_f32(xp, s, yp);
  }
  return out;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("maxpool2d_nhwc_raw", &maxpool2d_nhwc_raw, py::arg("x_addr"), py::arg("n"), py::arg("c"),
        py::arg("h"), py::arg("w"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"));
}

}  // namespace edgepack_py
