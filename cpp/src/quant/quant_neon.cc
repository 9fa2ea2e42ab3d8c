// NEON (AArch64 baseline) quantization kernels. Scheme: 16 floats per step: fmul by the
// reciprocal, fmax/fmin clamp to [qmin-zp, qmax-zp], fcvtns (round to nearest, ties to even,
// independent of FPCR), add zp, then saturating narrows sqxtn/sqxtun down to 8 bits. NaN is
// detected with fcmeq x,x. Tails use the scalar reference.
#include <arm_neon.h>

#include "kernels_internal.h"

namespace edgepack {
namespace {

inline float32x4_t clamp_checked(float32x4_t v, float32x4_t lo, float32x4_t hi, uint32x4_t& ok) {
  ok = vandq_u32(ok, vceqq_f32(v, v));
  return vminq_f32(vmaxq_f32(v, lo), hi);
}

template <bool kSigned>
bool quantize_t(const float* x, void* qv, std::size_t n, float inv_scale, int32_t zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const int32_t qmin = kSigned ? -128 : 0, qmax = kSigned ? 127 : 255;
  const float32x4_t inv = vdupq_n_f32(inv_scale);
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(qmin - zp));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(qmax - zp));
  const int32x4_t vzp = vdupq_n_s32(zp);
  uint32x4_t ok = vdupq_n_u32(~0u);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t r[4];
    for (int j = 0; j < 4; ++j) {
      float32x4_t v = vmulq_f32(vld1q_f32(x + i + 4 * j), inv);
      v = clamp_checked(v, lo, hi, ok);
      r[j] = vaddq_s32(vcvtnq_s32_f32(v), vzp);
    }
    const int16x8_t a = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
    const int16x8_t b = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
    if (kSigned) {
      vst1q_s8(reinterpret_cast<int8_t*>(q + i), vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
    } else {
      vst1q_u8(q + i, vcombine_u8(vqmovun_s16(a), vqmovun_s16(b)));
    }
  }
  bool nan = vminvq_u32(ok) == 0;
  if (i < n)
    nan |= kSigned ? ref::quantize_s8(x + i, q + i, n - i, inv_scale, zp)
                   : ref::quantize_u8(x + i, q + i, n - i, inv_scale, zp);
  return nan;
}

template <bool kSigned>
bool quantize_vec_t(const float* x, void* qv, std::size_t n, const float* inv_scale,
                    const int32_t* zp) {
  auto* q = static_cast<uint8_t*>(qv);
  const float qmin = kSigned ? -128.0f : 0.0f, qmax = kSigned ? 127.0f : 255.0f;
  uint32x4_t ok = vdupq_n_u32(~0u);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int32x4_t r[2];
    for (int j = 0; j < 2; ++j) {
      const int32x4_t z = vld1q_s32(zp + i + 4 * j);
      const float32x4_t zf = vcvtq_f32_s32(z);  // exact: |zp| <= 255
      float32x4_t v = vmulq_f32(vld1q_f32(x + i + 4 * j), vld1q_f32(inv_scale + i + 4 * j));
      v = clamp_checked(v, vsubq_f32(vdupq_n_f32(qmin), zf), vsubq_f32(vdupq_n_f32(qmax), zf), ok);
      r[j] = vaddq_s32(vcvtnq_s32_f32(v), z);
    }
    const int16x8_t a = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
    if (kSigned) {
      vst1_s8(reinterpret_cast<int8_t*>(q + i), vqmovn_s16(a));
    } else {
      vst1_u8(q + i, vqmovun_s16(a));
    }
  }
  bool nan = vminvq_u32(ok) == 0;
  for (; i < n; ++i)
    nan |= kSigned ? ref::quantize_s8(x + i, q + i, 1, inv_scale[i], zp[i])
                   : ref::quantize_u8(x + i, q + i, 1, inv_scale[i], zp[i]);
  return nan;
}

template <bool kSigned>
inline void load16_as_s32(const uint8_t* q, int32x4_t out[4]) {
  int16x8_t lo, hi;
  if (kSigned) {
    const int8x16_t b = vld1q_s8(reinterpret_cast<const int8_t*>(q));
    lo = vmovl_s8(vget_low_s8(b));
    hi = vmovl_s8(vget_high_s8(b));
  } else {
    const uint8x16_t b = vld1q_u8(q);
    lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(b)));
    hi = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(b)));
  }
  out[0] = vmovl_s16(vget_low_s16(lo));
  out[1] = vmovl_s16(vget_high_s16(lo));
  out[2] = vmovl_s16(vget_low_s16(hi));
  out[3] = vmovl_s16(vget_high_s16(hi));
}

template <bool kSigned>
void dequantize_t(const void* qv, float* x, std::size_t n, float scale, int32_t zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  const float32x4_t s = vdupq_n_f32(scale);
  const int32x4_t z = vdupq_n_s32(zp);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t w[4];
    load16_as_s32<kSigned>(q + i, w);
    for (int j = 0; j < 4; ++j) vst1q_f32(x + i + 4 * j, vmulq_f32(vcvtq_f32_s32(vsubq_s32(w[j], z)), s));
  }
  for (; i < n; ++i) {
    const int32_t v = kSigned ? int32_t{static_cast<const int8_t*>(qv)[i]} : int32_t{q[i]};
    x[i] = static_cast<float>(v - zp) * scale;
  }
}

template <bool kSigned>
void dequantize_vec_t(const void* qv, float* x, std::size_t n, const float* scale,
                      const int32_t* zp) {
  const auto* q = static_cast<const uint8_t*>(qv);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t w[4];
    load16_as_s32<kSigned>(q + i, w);
    for (int j = 0; j < 4; ++j) {
      const float32x4_t f = vcvtq_f32_s32(vsubq_s32(w[j], vld1q_s32(zp + i + 4 * j)));
      vst1q_f32(x + i + 4 * j, vmulq_f32(f, vld1q_f32(scale + i + 4 * j)));
    }
  }
  for (; i < n; ++i) {
    const int32_t v = kSigned ? int32_t{static_cast<const int8_t*>(qv)[i]} : int32_t{q[i]};
    x[i] = static_cast<float>(v - zp[i]) * scale[i];
  }
}

bool minmax(const float* x, std::size_t n, float* mn, float* mx) {
  std::size_t i = 0;
  bool nan = false;
  float lo = x[0], hi = x[0];
  if (n >= 16) {
    float32x4_t l[4], h[4];
    uint32x4_t ok = vdupq_n_u32(~0u);
    for (int j = 0; j < 4; ++j) l[j] = h[j] = vld1q_f32(x + 4 * j);
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 4; ++j) {
        const float32x4_t v = vld1q_f32(x + i + 4 * j);
        ok = vandq_u32(ok, vceqq_f32(v, v));
        l[j] = vminq_f32(l[j], v);
        h[j] = vmaxq_f32(h[j], v);
      }
    nan = vminvq_u32(ok) == 0;
    lo = vminvq_f32(vminq_f32(vminq_f32(l[0], l[1]), vminq_f32(l[2], l[3])));
    hi = vmaxvq_f32(vmaxq_f32(vmaxq_f32(h[0], h[1]), vmaxq_f32(h[2], h[3])));
  }
  if (i < n) {
    float l2, h2;
    nan |= ref::minmax(x + i, n - i, &l2, &h2);
    lo = l2 < lo ? l2 : lo;
    hi = h2 > hi ? h2 : hi;
  }
  *mn = lo;
  *mx = hi;
  return nan;
}

}  // namespace

QuantKernels quant_kernels_neon() {
  return QuantKernels{Isa::kNeon,
                      quantize_t<true>,
                      quantize_t<false>,
                      quantize_vec_t<true>,
                      quantize_vec_t<false>,
                      dequantize_t<true>,
                      dequantize_t<false>,
                      dequantize_vec_t<true>,
                      dequantize_vec_t<false>,
                      minmax};
}

}  // namespace edgepack
