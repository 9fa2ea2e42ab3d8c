# GEMM sources: appended by the GEMM work (issue 3).
