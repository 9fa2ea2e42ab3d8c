// Threaded quantization operations: split work over the pool, call the dispatched kernels.
// Splits are over whole rows/blocks and every element is computed independently, so results
// do not depend on the thread count (min/max is exact in any order).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "edgepack/parallel.h"
#include "edgepack/quant.h"

namespace edgepack {
namespace {

constexpr std::size_t kGrainElems = 1 << 15;  // ~32 Ki floats per task: below this, one thread

std::size_t elem_size(QDType) { return 1; }

[[noreturn]] void throw_nan() { throw std::domain_error("input contains NaN"); }

}  // namespace

void quantize_op(const QuantKernels& k, const float* x, void* q, QDType dtype, std::size_t outer,
                 std::size_t channels, std::size_t inner, const float* scale, const int32_t* zp) {
  const std::size_t total = outer * channels * inner;
  if (total == 0) return;
  auto* qb = static_cast<uint8_t*>(q);
  const std::size_t es = elem_size(dtype);
  std::atomic<bool> nan{false};
  if (channels == 1) {
    const float inv = 1.0f / scale[0];
    const QuantizeFn fn = dtype == QDType::kInt8 ? k.quantize_s8 : k.quantize_u8;
    parallel_for(total, kGrainElems, [&](std::size_t b, std::size_t e) {
      if (fn(x + b, qb + b * es, e - b, inv, zp[0])) nan = true;
    });
  } else if (inner == 1) {
    // Channel axis is the last one: each row of `channels` values uses the vector kernel.
    std::vector<float> inv(channels);
    for (std::size_t c = 0; c < channels; ++c) inv[c] = 1.0f / scale[c];
    const QuantizeVecFn fn = dtype == QDType::kInt8 ? k.quantize_vec_s8 : k.quantize_vec_u8;
    const std::size_t grain = std::max<std::size_t>(1, kGrainElems / channels);
    parallel_for(outer, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t o = b; o < e; ++o)
        if (fn(x + o * channels, qb + o * channels * es, channels, inv.data(), zp)) nan = true;
    });
  } else {
    const QuantizeFn fn = dtype == QDType::kInt8 ? k.quantize_s8 : k.quantize_u8;
    const std::size_t rows = outer * channels;
    const std::size_t grain = std::max<std::size_t>(1, kGrainElems / inner);
    parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        const std::size_t c = r % channels;
        if (fn(x + r * inner, qb + r * inner * es, inner, 1.0f / scale[c], zp[c])) nan = true;
      }
    });
  }
  if (nan) throw_nan();
}

void dequantize_op(const QuantKernels& k, const void* q, float* x, QDType dtype, std::size_t outer,
                   std::size_t channels, std::size_t inner, const float* scale, const int32_t* zp) {
  const std::size_t total = outer * channels * inner;
  if (total == 0) return;
  const auto* qb = static_cast<const uint8_t*>(q);
  const std::size_t es = elem_size(dtype);
  if (channels == 1) {
    const DequantizeFn fn = dtype == QDType::kInt8 ? k.dequantize_s8 : k.dequantize_u8;
    parallel_for(total, kGrainElems, [&](std::size_t b, std::size_t e) {
      fn(qb + b * es, x + b, e - b, scale[0], zp[0]);
    });
  } else if (inner == 1) {
    const DequantizeVecFn fn = dtype == QDType::kInt8 ? k.dequantize_vec_s8 : k.dequantize_vec_u8;
    const std::size_t grain = std::max<std::size_t>(1, kGrainElems / channels);
    parallel_for(outer, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t o = b; o < e; ++o)
        fn(qb + o * channels * es, x + o * channels, channels, scale, zp);
    });
  } else {
    const DequantizeFn fn = dtype == QDType::kInt8 ? k.dequantize_s8 : k.dequantize_u8;
    const std::size_t rows = outer * channels;
    const std::size_t grain = std::max<std::size_t>(1, kGrainElems / inner);
    parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        const std::size_t c = r % channels;
        fn(qb + r * inner * es, x + r * inner, inner, scale[c], zp[c]);
      }
    });
  }
}

void minmax_op(const QuantKernels& k, const float* x, std::size_t n, float* mn, float* mx) {
  if (n == 0) throw std::invalid_argument("min/max of an empty array");
  const std::size_t max_chunks = 64;
  const std::size_t grain = std::max<std::size_t>(kGrainElems, (n + max_chunks - 1) / max_chunks);
  const std::size_t nchunks = (n + grain - 1) / grain;
  std::vector<float> lo(nchunks), hi(nchunks);
  std::atomic<bool> nan{false};
  parallel_for(nchunks, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t c = b; c < e; ++c) {
      const std::size_t s = c * grain, len = std::min(grain, n - s);
      if (k.minmax(x + s, len, &lo[c], &hi[c])) nan = true;
    }
  });
  if (nan) throw_nan();
  *mn = *std::min_element(lo.begin(), lo.end());
  *mx = *std::max_element(hi.begin(), hi.end());
}

void minmax_channels_op(const QuantKernels& k, const float* x, std::size_t outer,
                        std::size_t channels, std::size_t inner, float* mn, float* mx) {
  if (channels == 0) return;
  if (outer * inner == 0) {
    std::fill(mn, mn + channels, 0.0f);
    std::fill(mx, mx + channels, 0.0f);
    return;
  }
  std::atomic<bool> nan{false};
  if (inner == 1) {
    // Channels are the last axis: fold the rows elementwise (the scalar loop vectorizes), split
    // over channel blocks so threads never share an output.
    const std::size_t grain = std::max<std::size_t>(64, kGrainElems / outer);
    parallel_for(channels, grain, [&](std::size_t b, std::size_t e) {
      bool bad = false;
      for (std::size_t c = b; c < e; ++c) {
        mn[c] = mx[c] = x[c];
        bad |= x[c] != x[c];
      }
      for (std::size_t o = 1; o < outer; ++o) {
        const float* row = x + o * channels;
        for (std::size_t c = b; c < e; ++c) {
          bad |= row[c] != row[c];
          mn[c] = row[c] < mn[c] ? row[c] : mn[c];
          mx[c] = row[c] > mx[c] ? row[c] : mx[c];
        }
      }
      if (bad) nan = true;
    });
  } else {
    const std::size_t grain = std::max<std::size_t>(1, kGrainElems / (outer * inner));
    parallel_for(channels, grain, [&](std::size_t b, std::size_t e) {
      for (std::size_t c = b; c < e; ++c) {
        float lo, hi;
        bool bad = k.minmax(x + c * inner, inner, &lo, &hi);
        for (std::size_t o = 1; o < outer; ++o) {
          float l2, h2;
          bad |= k.minmax(x + (o * channels + c) * inner, inner, &l2, &h2);
          lo = l2 < lo ? l2 : lo;
          hi = h2 > hi ? h2 : hi;
        }
        mn[c] = lo;
        mx[c] = hi;
        if (bad) nan = true;
      }
    });
  }
  if (nan) throw_nan();
}

void quantize_dynamic_op(const QuantKernels& k, const float* x, void* q, QDType dtype,
                         bool symmetric, bool per_row, std::size_t rows, std::size_t cols,
                         float* scale, int32_t* zp) {
  if (rows * cols == 0) {  // empty input: the parameters of an all-zero range
    const QParams p = qparams_from_minmax(0.0f, 0.0f, dtype, symmetric);
    for (std::size_t r = 0; r < (per_row ? rows : 1); ++r) {
      scale[r] = p.scale;
      zp[r] = p.zero_point;
    }
    return;
  }
  if (!per_row) {
    float mn, mx;
    minmax_op(k, x, rows * cols, &mn, &mx);
    const QParams p = qparams_from_minmax(mn, mx, dtype, symmetric);
    scale[0] = p.scale;
    zp[0] = p.zero_point;
    quantize_op(k, x, q, dtype, 1, 1, rows * cols, scale, zp);
    return;
  }
  // Per row, fused: the row is still in L1 when it is quantized right after its min/max.
  const QuantizeFn fn = dtype == QDType::kInt8 ? k.quantize_s8 : k.quantize_u8;
  auto* qb = static_cast<uint8_t*>(q);
  std::atomic<int> bad{0};  // 1 = NaN, 2 = inf
  const std::size_t grain = std::max<std::size_t>(1, kGrainElems / cols);
  parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r) {
      float mn, mx;
      if (k.minmax(x + r * cols, cols, &mn, &mx)) {
        bad = 1;
        return;
      }
      if (!std::isfinite(mn) || !std::isfinite(mx)) {
        bad = 2;
        return;
      }
      const QParams p = qparams_from_minmax(mn, mx, dtype, symmetric);
      scale[r] = p.scale;
      zp[r] = p.zero_point;
      fn(x + r * cols, qb + r * cols, cols, 1.0f / p.scale, p.zero_point);
    }
  });
  if (bad == 1) throw_nan();
  if (bad == 2) throw std::domain_error("input contains inf");
}

}  // namespace edgepack
