// Scalar reference epilogues (see gemm_epilogue.h): the spec the vector versions match. The
// per-element math is edgepack/epilogue.h, shared with the sparse driver.
#include <algorithm>

#include "edgepack/epilogue.h"
#include "gemm/gemm_epilogue.h"
#include "kernels_internal.h"

namespace edgepack {
namespace {

inline float dequant(int32_t raw, int32_t zpoff, int32_t cs, float as, float ws, const float* bias,
                     bool relu) {
  return dequant_epilogue(zp_correct_off(raw, zpoff, cs), as, ws, bias, 0, relu);
}

void s32_ref(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
             int32_t* out, std::size_t ldo) {
  for (std::size_t r = 0; r < mr; ++r)
    for (std::size_t j = 0; j < nc; ++j)
      out[r * ldo + j] = zp_correct_off(tile[r * e.ldt + j], e.zpoff, e.colsum[j]);
}

void f32_ref(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
             float* out, std::size_t ldo) {
  for (std::size_t r = 0; r < mr; ++r)
    for (std::size_t j = 0; j < nc; ++j)
      out[r * ldo + j] = dequant(tile[r * e.ldt + j], e.row_zpoff[r], e.colsum[j], e.row_scale[r],
                                 e.w_scale[j], e.bias ? e.bias + j : nullptr, e.relu);
}

void q8_ref(const int32_t* tile, std::size_t mr, std::size_t nc, const TileEpilogueArgs& e,
            uint8_t* out, std::size_t ldo) {
  for (std::size_t r = 0; r < mr; ++r)
    for (std::size_t j = 0; j < nc; ++j) {
      const float y = dequant(tile[r * e.ldt + j], e.zpoff, e.colsum[j], e.a_scale, e.w_scale[j],
                              e.bias ? e.bias + j : nullptr, e.relu);
      float v = std::min(std::max(y * e.inv, e.lo), e.hi);
      // Round half to even: |v| <= 383, so adding and removing 1.5 * 2^23 rounds exactly like
      // rint under the default rounding mode.
      v = (v + 12582912.0f) - 12582912.0f;
      out[r * ldo + j] = static_cast<uint8_t>(static_cast<int32_t>(v) + e.out_zp);
    }
}

}  // namespace

GemmEpilogues gemm_epilogues_ref() { return GemmEpilogues{Isa::kScalar, s32_ref, f32_ref, q8_ref}; }

}  // namespace edgepack
