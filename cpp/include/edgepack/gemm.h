// int8 GEMM: the packed-weight layout every ISA reads, and the micro-kernel contract.
//
// Packed B (weights w[N][K], int8, per-output-channel): N padded with zero columns to a multiple
// of kNR = 16, K padded with zeros to a multiple of kKP = 8. Panel p holds columns 16p..16p+15
// as Kp/4 groups of 64 bytes; group g is [col 0: k=4g..4g+3][col 1: k=4g..4g+3]...[col 15: ...].
// This "c4n16" layout is universal: AVX-512 VNNI loads a group as one zmm for vpdpbusd, NEON
// dotprod as four q registers for sdot, AVX2/NEON widen it to int16, i8mm zips two groups into
// 2x8 blocks for smmla. So a packed buffer made on one machine runs on any other: nothing to
// re-pack.
//
// A operand (activations): rows of Kp bytes (zero- or anything-padded past K: B is zero there).
// The kernel states which encoding it reads:
//   kU8: A holds a_u8 (0..255)            -> the kernel computes sum a_u8 * w
//   kS8: A holds a_u8 - 128 (as int8)     -> the kernel computes sum (a_u8 - 128) * w
// The driver turns this into the exact sum (a_u8 - zp) * w with the per-column sums of w
// (colsum[n] = sum_k w[n][k]), using wrap-around int32 arithmetic whose final value is exact
// whenever the true result fits int32 (guaranteed for K <= kMaxK). int8 activations a_s8 with
// zero point z are the uint8 values a_s8 + 128 with zero point z + 128.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "edgepack/cpu.h"

namespace edgepack {

constexpr std::size_t kNR = 16;     // columns per packed panel
constexpr std::size_t kKP = 8;      // K padding granule
constexpr std::size_t kMaxK = 65536;  // 255 * 128 * 65536 < 2^31: int32 accumulation is exact

enum class AFormat : int { kU8 = 0, kS8 = 1 };

// C[m][n] = sum_{k < kp} A[m][k] * Bpanel[k][n] for m < mr, n < 16 (a full panel), int32,
// stored to c + m * ldc + n. kp is a multiple of kKP. mr is in 1..max_mr.
using GemmUkernelFn = void (*)(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda,
                               const int8_t* b_panel, int32_t* c, std::size_t ldc);

struct GemmKernels {
  Isa isa;
  AFormat a_format;
  std::size_t max_mr;  // rows per micro-kernel call
  GemmUkernelFn ukernel;
};

// Every compiled-in table (reference first) and the dispatched one.
const std::vector<GemmKernels>& gemm_kernel_list();
const GemmKernels& gemm_kernels();

}  // namespace edgepack
