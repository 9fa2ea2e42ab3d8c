#include "common.h"
#include "edgepack/cpu.h"
#include "edgepack/gemm.h"
#include "edgepack/parallel.h"
#include "edgepack/quant.h"
#include "edgepack/sparse.h"
#include "gemm/gemm_wide.h"

namespace edgepack_py {

namespace {

template <class List>
py::list isa_names(const List& list) {
  py::list out;
  for (const auto& k : list) out.append(edgepack::isa_name(k.isa));
  return out;
}

}  // namespace

void bind_cpu(py::module_& m) {
  m.def("cpu_features", [] {
    const edgepack::CpuFeatures& f = edgepack::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    d["avx512f"] = f.avx512f;
    d["avx512bw"] = f.avx512bw;
    d["avx512vl"] = f.avx512vl;
    d["avx512vnni"] = f.avx512vnni;
    d["avxvnni"] = f.avxvnni;
    d["asimd"] = f.asimd;
    d["dotprod"] = f.dotprod;
    d["i8mm"] = f.i8mm;
    return d;
  });
  m.def("selected_isa", [] { return std::string(edgepack::isa_name(edgepack::selected_isa())); });
  m.def("isa_ladder", [] {
    py::list out;
    for (auto isa : edgepack::isa_ladder()) out.append(edgepack::isa_name(isa));
    return out;
  });
  m.def("supported_isas", [] {
    py::list out;
    for (auto isa : edgepack::isa_ladder())
      if (edgepack::isa_supported_by_cpu(isa)) out.append(edgepack::isa_name(isa));
    return out;
  });
  // Per kernel family: every table compiled in, and the one dispatch picked.
  m.def("kernel_families", [] {
    py::dict d;
    py::dict quant;
    quant["available"] = isa_names(edgepack::quant_kernel_list());
    quant["selected"] = edgepack::isa_name(edgepack::quant_kernels().isa);
    d["quant"] = quant;
    py::dict gemm;
    gemm["available"] = isa_names(edgepack::gemm_kernel_list());
    gemm["selected"] = edgepack::isa_name(edgepack::gemm_kernels().isa);
    // The two-panel kernel the driver pairs with it ("amx" when AMX-INT8 runs), or None.
    const edgepack::GemmWideKernels* wide = edgepack::gemm_wide_for(edgepack::gemm_kernels());
    gemm["wide"] = wide ? py::object(py::str(wide->name)) : py::object(py::none());
    d["gemm"] = gemm;
    py::dict sparse;
    sparse["available"] = isa_names(edgepack::sparse_kernel_list());
    sparse["selected"] = edgepack::isa_name(edgepack::sparse_kernels().isa);
    d["sparse"] = sparse;
    return d;
  });
  m.def("get_num_threads", &edgepack::get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
    edgepack::set_num_threads(n);
  });
}

}  // namespace edgepack_py
