// Max pooling over float32 NHWC images: what QuantConv2d's outputs (channels_last memory) meet
// next in most CNNs. torch's channels_last max_pool2d costs ~10 us for a 16x26x26 map at batch
// 1; this loop runs the same in ~1 us, which matters when the whole int8 model takes ~100 us.
#pragma once

#include <cstddef>

namespace edgepack {

struct Pool2dShape {
  std::size_t n, h, w, c;  // input [n][h][w][c]
  std::size_t oh, ow;      // output [n][oh][ow][c] (the caller applies torch's size rule)
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

// torch.nn.functional.max_pool2d semantics: windows start at o*s - p, taps step by d, taps
// outside the image are skipped (torch pads with -inf), NaN propagates (a window holding a NaN
// yields NaN). Every output window must hold at least one input tap (torch's output size rule
// guarantees it). Threads over output rows.
void maxpool2d_nhwc_f32(const float* x, const Pool2dShape& s, float* y);

// torch's output size for one axis (floor or ceil mode); 0 when the input is too small.
std::size_t pool_out_size(std::size_t in, int k, int s, int p, int d, bool ceil_mode);

}  // namespace edgepack
