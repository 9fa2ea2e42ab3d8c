# GEMM sources: appended by the GEMM work (issue 3).
list(APPEND EP_SRC_COMMON cpp/src/gemm/gemm_ref.cc)
