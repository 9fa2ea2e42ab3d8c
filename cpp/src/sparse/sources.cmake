# Sparse sources: appended by the sparse work (issue 4).
list(APPEND EP_SRC_COMMON cpp/src/sparse/sparse_pack.cc cpp/src/sparse/sparse_ops.cc
     cpp/src/sparse/sparse_ref.cc)
list(APPEND EP_SRC_AVX2 cpp/src/sparse/sparse_avx2.cc)
list(APPEND EP_SRC_AVX512VNNI cpp/src/sparse/sparse_avx512vnni.cc)
list(APPEND EP_SRC_NEON cpp/src/sparse/sparse_neon.cc)
list(APPEND EP_SRC_NEONDOT cpp/src/sparse/sparse_neondot.cc)
