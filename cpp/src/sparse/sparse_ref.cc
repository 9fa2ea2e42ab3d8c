// Scalar reference sparse kernel: the spec of the SELL-16 layout (sparse.h). Walks every step of
// every lane (padding blocks are zero, so they add nothing) and reads A as uint8 (kU8). Its panel
// height is 1, so the tile is plain zero-padded rows: at[(m*Q + q)*4 + i] = a[m][4q + i].
#include "kernels_internal.h"

namespace edgepack {
namespace {

void run_ref(const SparseView& v, const uint8_t* at, std::size_t ldm, std::size_t s_begin,
             std::size_t s_end, int32_t* acc) {
  const std::size_t q_count = std::size_t{v.kb} * v.t;
  for (std::size_t s = s_begin; s < s_end; ++s)
    for (std::size_t lane = 0; lane < kSparseSlice; ++lane) {
      int32_t* out = acc + ((s - s_begin) * kSparseSlice + lane) * ldm;
      for (std::size_t m = 0; m < ldm; ++m) out[m] = 0;
      for (std::size_t e = v.slice_ptr[s]; e < v.slice_ptr[s + 1]; ++e) {
        const std::size_t j = v.idx[e * kSparseSlice + lane];
        for (std::size_t t = 0; t < v.t; ++t) {
          const int8_t* w = v.values + ((e * v.t + t) * kSparseSlice + lane) * 4;
          const std::size_t q = j * v.t + t;
          for (std::size_t m = 0; m < ldm; ++m) {
            const uint8_t* a = at + (m * q_count + q) * 4;
            for (std::size_t i = 0; i < 4; ++i) out[m] += int32_t{a[i]} * int32_t{w[i]};
          }
        }
      }
    }
}

}  // namespace

SparseKernels sparse_kernels_ref() {
  return SparseKernels{Isa::kScalar, AFormat::kU8, 1, 1, 1, run_ref, nullptr, nullptr};
}

}  // namespace edgepack
