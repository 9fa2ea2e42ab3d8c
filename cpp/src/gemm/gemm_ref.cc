// Scalar reference micro-kernel: the spec of the packed c4n16 layout (see gemm.h). Reads A as
// uint8 (kU8) and the panel group by group exactly as the layout is defined.
#include "kernels_internal.h"

namespace edgepack {
namespace {

void ukernel_ref(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
                 const int8_t* b_panel, int32_t* c, std::size_t ldc) {
  for (std::size_t m = 0; m < mr; ++m)
    for (std::size_t n = 0; n < kNR; ++n) {
      int64_t acc = 0;
      for (std::size_t k = 0; k < kp; ++k) {
        const int8_t w = b_panel[(k / 4) * (4 * kNR) + n * 4 + (k % 4)];
        acc += int64_t{a[m * lda + k]} * int64_t{w};
      }
      c[m * ldc + n] = static_cast<int32_t>(acc);
    }
}

}  // namespace

GemmKernels gemm_kernels_ref() { return GemmKernels{Isa::kScalar, AFormat::kU8, 8, ukernel_ref}; }

}  // namespace edgepack
