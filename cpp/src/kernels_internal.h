// Per-ISA kernel tables, defined one per source file and collected by dispatch.cc alone.
#pragma once

#include "edgepack/gemm.h"
#include "edgepack/quant.h"
#include "edgepack/sparse.h"
#include "gemm/gemm_epilogue.h"
#include "gemm/gemm_wide.h"

namespace edgepack {

QuantKernels quant_kernels_ref();
#if defined(EDGEPACK_ARCH_X86)
QuantKernels quant_kernels_avx2();
QuantKernels quant_kernels_avx512();  // registered at Isa::kAvx512Vnni
#endif
#if defined(EDGEPACK_ARCH_ARM)
QuantKernels quant_kernels_neon();
#endif

GemmKernels gemm_kernels_ref();
GemmEpilogues gemm_epilogues_ref();
// Per-ISA GEMM tables: declare each here, guarded by EDGEPACK_ARCH_X86 / EDGEPACK_ARCH_ARM.
#if defined(EDGEPACK_ARCH_X86)
GemmKernels gemm_kernels_avx2();
GemmKernels gemm_kernels_avx512vnni();
GemmEpilogues gemm_epilogues_avx512();
GemmWideKernels gemm_wide_kernels_avx512vnni();
// AMX-INT8 (runs at the avx512vnni level when amx_usable(): CPU, OS and permission checked).
bool amx_usable();
GemmWideKernels gemm_wide_kernels_amx();
#endif
#if defined(EDGEPACK_ARCH_ARM)
GemmKernels gemm_kernels_neon();
GemmKernels gemm_kernels_neondot();
GemmKernels gemm_kernels_i8mm();
#endif

SparseKernels sparse_kernels_ref();
// The portable SparsePackPanelFn (sparse_ops.cc), which ISA versions fall back on.
void sparse_pack_panel_scalar(const uint8_t* a, std::size_t lda, std::size_t k, std::size_t rows,
                              std::size_t R, std::size_t q4, uint32_t flip, uint8_t* dst);
#if defined(EDGEPACK_ARCH_X86)
SparseKernels sparse_kernels_avx2();
SparseKernels sparse_kernels_avx512vnni();
#endif
#if defined(EDGEPACK_ARCH_ARM)
SparseKernels sparse_kernels_neon();
SparseKernels sparse_kernels_neondot();
#endif

}  // namespace edgepack
