// SPDX-License-Identifier: Apache-2.0
// liquidgemm._C: declares and exports only. Pointers and the stream arrive as Python ints, already validated by
// python/liquidgemm/ops.py; this file turns them into GemmArgs and a Status into a Python exception.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "liquidgemm/launch.hpp"

namespace nb = nanobind;
using namespace nb::literals;

using liquidgemm::GemmArgs;
using liquidgemm::KernelEntry;
using liquidgemm::Status;

namespace {

template <class T>
T* ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

KernelEntry const& lookup(std::string const& config_id) {
  if (KernelEntry const* entry = liquidgemm::find_kernel(config_id.c_str())) return *entry;
  throw nb::value_error(("config_id: unknown config '" + config_id + "'; liquidgemm._C.configs() lists the "
                         "compiled ones (build others with LIQUIDGEMM_CONFIGS, see README)").c_str());
}

bool programmatic_launch = true;  // set_programmatic_launch(): benchmarks compare both ways in one process

void raise_if_error(Status status, std::string const& where) {
  if (!status.ok) throw std::runtime_error(where + ": " + status.what);
}

GemmArgs problem(int64_t m, int64_t n, int64_t k, int group_size, int splits) {
  if (splits < 0) throw nb::value_error(("splits: must be >= 0, got " + std::to_string(splits)).c_str());
  GemmArgs args;
  args.m = m, args.n = n, args.k = k, args.group_size = group_size, args.splits = splits;
  return args;
}

std::vector<std::string> configs() {
  size_t count = 0;
  KernelEntry const* table = liquidgemm::kernel_table(&count);
  std::vector<std::string> ids;
  for (size_t i = 0; i < count; ++i) ids.emplace_back(table[i].id);
  return ids;
}

size_t gemm_workspace_size(std::string const& config_id, int64_t m, int64_t n, int64_t k, int group_size,
                           int splits) {
  return lookup(config_id).workspace_size(problem(m, n, k, group_size, splits));
}

// The problem plus the weight, output and stream of one launch (the activation pointers differ per entry point).
GemmArgs launch_args(int64_t m, int64_t n, int64_t k, int group_size, int splits, uintptr_t weight, uintptr_t params,
                     uintptr_t s1, uintptr_t bias, uintptr_t out, uintptr_t stream) {
  GemmArgs args = problem(m, n, k, group_size, splits);
  args.weight = ptr<const uint8_t>(weight);
  args.params = ptr<const uint8_t>(params);
  args.s1 = ptr<const float>(s1);
  args.bias = ptr<const float>(bias);
  args.out = ptr<void>(out);
  args.stream = reinterpret_cast<cudaStream_t>(stream);
  args.pdl = programmatic_launch;
  return args;
}

// A buffer shorter than the kernel needs would be silent memory corruption, so this check stays on the hot path.
void check_buffer(char const* name, std::string const& config_id, size_t bytes, size_t needed) {
  if (bytes < needed) {
    throw nb::value_error((std::string(name) + ": " + config_id + " needs " + std::to_string(needed) +
                           " bytes, got " + std::to_string(bytes)).c_str());
  }
}

liquidgemm::ActDtype act_dtype(std::string const& name) {
  if (name == "bf16") return liquidgemm::ActDtype::kBF16;
  if (name == "f16") return liquidgemm::ActDtype::kF16;
  throw nb::value_error(("x_dtype: must be 'bf16' or 'f16', got '" + name + "'").c_str());
}

void gemm(std::string const& config_id, uintptr_t act, uintptr_t act_scale, uintptr_t weight, uintptr_t params,
          uintptr_t s1, uintptr_t bias, uintptr_t out, uintptr_t workspace, size_t workspace_bytes, int64_t m,
          int64_t n, int64_t k, int group_size, int splits, uintptr_t stream, int64_t act_rows) {
  KernelEntry const& kernel = lookup(config_id);
  GemmArgs args = launch_args(m, n, k, group_size, splits, weight, params, s1, bias, out, stream);
  check_buffer("workspace", config_id, workspace_bytes, kernel.workspace_size(args));
  if (act_rows != 0 && act_rows < m) {
    throw nb::value_error(("act_rows: must be 0 or >= m = " + std::to_string(m) + ", got " +
                           std::to_string(act_rows)).c_str());
  }
  args.act = ptr<const int8_t>(act);
  args.act_rows = act_rows;
  args.act_scale = ptr<float>(act_scale);
  args.workspace = ptr<void>(workspace);
  raise_if_error(kernel.run(args), config_id);
}

size_t linear_scratch_size(std::string const& config_id, int64_t m, int64_t n, int64_t k, int group_size) {
  return liquidgemm::linear_scratch(lookup(config_id), problem(m, n, k, group_size, 0)).bytes;
}

void linear(std::string const& config_id, uintptr_t x, std::string const& x_dtype, uintptr_t scratch,
            size_t scratch_bytes, uintptr_t weight, uintptr_t params, uintptr_t s1, uintptr_t bias, uintptr_t out,
            int64_t m, int64_t n, int64_t k, int group_size, uintptr_t stream) {
  KernelEntry const& kernel = lookup(config_id);
  GemmArgs const args = launch_args(m, n, k, group_size, 0, weight, params, s1, bias, out, stream);
  liquidgemm::LinearScratch const layout = liquidgemm::linear_scratch(kernel, args);
  check_buffer("scratch", config_id, scratch_bytes, layout.bytes);
  raise_if_error(
      liquidgemm::run_linear(kernel, layout, ptr<const void>(x), act_dtype(x_dtype), ptr<void>(scratch), args),
      config_id);
}

void quantize_act(uintptr_t x, std::string const& x_dtype, uintptr_t x_q, uintptr_t x_scale, int64_t m, int64_t k,
                  uintptr_t stream) {
  raise_if_error(liquidgemm::quantize_act(ptr<const void>(x), act_dtype(x_dtype), ptr<int8_t>(x_q),
                                          ptr<float>(x_scale), m, k, reinterpret_cast<cudaStream_t>(stream)),
                 "quantize_act");
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "liquidgemm native kernels (torch-free; use liquidgemm._native or the torch ops instead)";
  m.attr("selection") = LIQUIDGEMM_SELECTION;  // the LIQUIDGEMM_CONFIGS value this module was built with
  m.def("configs", &configs, "Ids of the compiled kernel configs.");
  m.def("gemm", &gemm, "config_id"_a, "act"_a, "act_scale"_a, "weight"_a, "params"_a, "s1"_a, "bias"_a, "out"_a,
        "workspace"_a, "workspace_bytes"_a, "m"_a, "n"_a, "k"_a, "group_size"_a, "splits"_a, "stream"_a,
        "act_rows"_a = 0,
        "Launch one W4A8 GEMM on `stream` (pointers as ints, bias may be 0; act_rows: rows of act it may read, "
        ">= m, 0 = m).");
  m.attr("act_row_multiple") = liquidgemm::kActRowMultiple;
  m.def("set_programmatic_launch", [](bool enabled) { programmatic_launch = enabled; }, "enabled"_a,
        "Launch GEMMs with programmatic dependent launch (default on: the prologue and the weight prefetch overlap "
        "the previous kernel).");
  m.def("gemm_workspace_size", &gemm_workspace_size, "config_id"_a, "m"_a, "n"_a, "k"_a, "group_size"_a, "splits"_a,
        "Workspace bytes the config needs for this problem.");
  m.def("linear_scratch_size", &linear_scratch_size, "config_id"_a, "m"_a, "n"_a, "k"_a, "group_size"_a,
        "Scratch bytes linear() needs: int8 activations, token scales and the GEMM's workspace.");
  m.def("linear", &linear, "config_id"_a, "x"_a, "x_dtype"_a, "scratch"_a, "scratch_bytes"_a, "weight"_a,
        "params"_a, "s1"_a, "bias"_a, "out"_a, "m"_a, "n"_a, "k"_a, "group_size"_a, "stream"_a,
        "Quantize x [m, k] ('bf16' or 'f16') into `scratch` and run the W4A8 GEMM on it, on `stream`.");
  m.def("quantize_act", &quantize_act, "x"_a, "x_dtype"_a, "x_q"_a, "x_scale"_a, "m"_a, "k"_a, "stream"_a,
        "Per-token symmetric INT8 quantization of x [m, k] ('bf16' or 'f16') on `stream`.");
}
