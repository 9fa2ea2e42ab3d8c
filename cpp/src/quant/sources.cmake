list(APPEND EP_SRC_COMMON cpp/src/quant/quant_ref.cc cpp/src/quant/quant_ops.cc)
list(APPEND EP_SRC_AVX2 cpp/src/quant/quant_avx2.cc)
list(APPEND EP_SRC_NEON cpp/src/quant/quant_neon.cc)
list(APPEND EP_SRC_AVX512VNNI cpp/src/quant/quant_avx512.cc)
