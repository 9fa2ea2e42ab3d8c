# GEMM sources: appended by the GEMM work (issue 3).
list(APPEND EP_SRC_COMMON cpp/src/gemm/gemm_ref.cc)
list(APPEND EP_SRC_COMMON cpp/src/gemm/gemm_pack.cc cpp/src/gemm/gemm_driver.cc
                          cpp/src/gemm/gemm_epilogue_ref.cc)
list(APPEND EP_SRC_AVX2 cpp/src/gemm/qu8_gemm_6x16c4_avx2.cc)
list(APPEND EP_SRC_AVX512VNNI cpp/src/gemm/qu8_gemm_16x16c4_avx512vnni.cc
                              cpp/src/gemm/qu8_gemm_8x32c4_avx512vnni.cc
                              cpp/src/gemm/qu8_gemm_16x32c4_amx.cc
                              cpp/src/gemm/gemm_epilogue_avx512.cc)
list(APPEND EP_SRC_NEON cpp/src/gemm/qu8_gemm_4x16c4_neon.cc)
list(APPEND EP_SRC_NEONDOT cpp/src/gemm/qs8_gemm_4x16c4_neondot.cc)
list(APPEND EP_SRC_I8MM cpp/src/gemm/qu8_gemm_8x16c8_i8mm.cc)
# The AMX kernel also needs the AMX intrinsics: COMPILE_FLAGS adds to the COMPILE_OPTIONS that
# edgepack_add_isa_sources() gives every AVX-512 VNNI file.
set_source_files_properties(cpp/src/gemm/qu8_gemm_16x32c4_amx.cc PROPERTIES
                            COMPILE_FLAGS "-mamx-tile -mamx-int8")
