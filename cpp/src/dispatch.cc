// The ONE place that chooses kernels. Each family keeps a list of every table compiled into this
// build (reference first, then ascending ISA level); the dispatched table is the highest-level
// entry whose ISA is enabled (CPU support, capped by EDGEPACK_ISA). Tests and benchmarks walk
// the same lists, so a kernel is tested and timed by being listed here.
#include "kernels_internal.h"

namespace edgepack {
namespace {

template <class T>
const T& pick(const std::vector<T>& list) {
  const T* best = &list.front();
  for (const T& k : list)
    if (isa_enabled(k.isa)) best = &k;
  return *best;
}

}  // namespace

const std::vector<QuantKernels>& quant_kernel_list() {
  static const std::vector<QuantKernels> list{
      quant_kernels_ref(),
#if defined(EDGEPACK_ARCH_X86)
      quant_kernels_avx2(),
      quant_kernels_avx512(),
#endif
#if defined(EDGEPACK_ARCH_ARM)
      quant_kernels_neon(),
#endif
  };
  return list;
}

const QuantKernels& quant_kernels() {
  static const QuantKernels& k = pick(quant_kernel_list());
  return k;
}

const std::vector<GemmKernels>& gemm_kernel_list() {
  static const std::vector<GemmKernels> list{
      gemm_kernels_ref(),
#if defined(EDGEPACK_ARCH_X86)
      gemm_kernels_avx2(),
      gemm_kernels_avx512vnni(),
#endif
#if defined(EDGEPACK_ARCH_ARM)
      gemm_kernels_neon(),
      gemm_kernels_neondot(),
      gemm_kernels_i8mm(),
#endif
  };
  return list;
}

const GemmKernels& gemm_kernels() {
  static const GemmKernels& k = pick(gemm_kernel_list());
  return k;
}

// Epilogues of the GEMM driver (gemm_epilogue.h): a family of their own, same rules.
const std::vector<GemmEpilogues>& gemm_epilogue_list() {
  static const std::vector<GemmEpilogues> list{
      gemm_epilogues_ref(),
#if defined(EDGEPACK_ARCH_X86)
      gemm_epilogues_avx512(),
#endif
  };
  return list;
}

const GemmEpilogues& gemm_epilogues() {
  static const GemmEpilogues& k = pick(gemm_epilogue_list());
  return k;
}

// Two-panel micro-kernels (gemm_wide.h): used alongside the dispatched GemmKernels when one
// matches its ISA and A format (the first match wins). No reference entry: the one-panel
// reference is the spec. AMX-INT8 has no rung of its own on the ISA ladder: it is listed at the
// avx512vnni level when the machine can run it, and EDGEPACK_AMX=0 leaves it out.
const std::vector<GemmWideKernels>& gemm_wide_kernel_list() {
  static const std::vector<GemmWideKernels> list = [] {
    std::vector<GemmWideKernels> l;
#if defined(EDGEPACK_ARCH_X86)
    if (isa_supported_by_cpu(Isa::kAvx512Vnni) && amx_usable()) l.push_back(gemm_wide_kernels_amx());
    l.push_back(gemm_wide_kernels_avx512vnni());
#endif
    return l;
  }();
  return list;
}

const GemmWideKernels* gemm_wide_for(const GemmKernels& gk) {
  for (const GemmWideKernels& w : gemm_wide_kernel_list())
    if (w.isa == gk.isa && w.a_format == gk.a_format && isa_enabled(w.isa)) return &w;
  return nullptr;
}

const std::vector<SparseKernels>& sparse_kernel_list() {
  static const std::vector<SparseKernels> list{
      sparse_kernels_ref(),
#if defined(EDGEPACK_ARCH_X86)
      sparse_kernels_avx2(),
      sparse_kernels_avx512vnni(),
#endif
#if defined(EDGEPACK_ARCH_ARM)
      sparse_kernels_neon(),
      sparse_kernels_neondot(),
#endif
  };
  return list;
}

const SparseKernels& sparse_kernels() {
  static const SparseKernels& k = pick(sparse_kernel_list());
  return k;
}

}  // namespace edgepack
