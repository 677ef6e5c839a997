// SPDX-License-Identifier: Apache-2.0
// nanobind module liquidgemm_cutlass_peer._C: declares and exports only. Pointers and streams are plain ints;
// the Python layer validates tensors and allocates outputs and workspace.
#include <cstdint>
#include <string>

#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "peer_gemm.hpp"

namespace nb = nanobind;
namespace peer = liquidgemm_cutlass_peer;

template <class T>
static T* ptr(std::uintptr_t address) { return reinterpret_cast<T*>(address); }

static peer::GemmArgs make_args(std::uintptr_t weight, std::uintptr_t group_scale, std::uintptr_t act,
                                std::uintptr_t act_scale, std::uintptr_t channel_scale, std::uintptr_t out,
                                std::uintptr_t workspace, size_t workspace_bytes, int m, int n, int k,
                                int group_size, std::uintptr_t stream) {
  peer::GemmArgs a;
  a.weight = ptr<void const>(weight);
  a.group_scale = ptr<void const>(group_scale);
  a.act = ptr<void const>(act);
  a.act_scale = ptr<float const>(act_scale);
  a.channel_scale = ptr<float const>(channel_scale);
  a.out = ptr<void>(out);
  a.workspace = ptr<void>(workspace);
  a.workspace_bytes = workspace_bytes;
  a.m = m, a.n = n, a.k = k, a.group_size = group_size;
  a.stream = ptr<CUstream_st>(stream);
  return a;
}

NB_MODULE(_C, m) {
  m.doc() = "CUTLASS 4.2 Hopper mixed-input GEMMs (int4 x bf16, int4 x fp8): benchmark peer of liquidgemm";

  m.def("configs", [] {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto const& e : peer::kernels()) out.emplace_back(e.id, e.act);
    return out;
  }, "[(config_id, act)] for every compiled kernel; act is 'bf16' or 'fp8'");

  m.def("workspace_size", [](std::string const& config, int m, int n, int k, int group_size) {
    peer::GemmArgs a;
    a.m = m, a.n = n, a.k = k, a.group_size = group_size;
    return peer::find_kernel(config).workspace_size(a);
  }, nb::arg("config"), nb::arg("m"), nb::arg("n"), nb::arg("k"), nb::arg("group_size"));

  m.def("gemm", [](std::string const& config, std::uintptr_t weight, std::uintptr_t group_scale,
                   std::uintptr_t act, std::uintptr_t act_scale, std::uintptr_t channel_scale, std::uintptr_t out,
                   std::uintptr_t workspace, size_t workspace_bytes, int m, int n, int k, int group_size,
                   std::uintptr_t stream) {
    peer::find_kernel(config).run(make_args(weight, group_scale, act, act_scale, channel_scale, out, workspace,
                                            workspace_bytes, m, n, k, group_size, stream));
  }, nb::arg("config"), nb::arg("weight"), nb::arg("group_scale"), nb::arg("act"), nb::arg("act_scale"),
     nb::arg("channel_scale"), nb::arg("out"), nb::arg("workspace"), nb::arg("workspace_bytes"), nb::arg("m"),
     nb::arg("n"), nb::arg("k"), nb::arg("group_size"), nb::arg("stream"),
     "Y = X · W^T into `out` on `stream`; pointers are device addresses (0 = none for the fp8 scales).");

  m.def("reorder_int4_weight", [](std::string const& act, std::uintptr_t src, std::uintptr_t dst, int n, int k,
                                  std::uintptr_t stream) {
    peer::reorder_int4_weight(act, ptr<int8_t const>(src), ptr<int8_t>(dst), n, k, ptr<CUstream_st>(stream));
  }, nb::arg("act"), nb::arg("src"), nb::arg("dst"), nb::arg("n"), nb::arg("k"), nb::arg("stream"),
     "Scatter int8 [N,K] (one int4 value per byte) into the mainloop's reordered order, one value per byte.");
}
