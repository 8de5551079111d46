// Run-time choice of the CPU kernels' SIMD path (see cpu_isa.h), and the torch.ops.alwa
// operators that report and override it.
#include "cpu/cpu_isa.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>

namespace alwa {
namespace cpu {
namespace {

constexpr Isa kAllIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512};

bool cpu_has(Isa isa) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's checks include the OS's support for the wider register state (XGETBV).
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

bool built_with(Isa isa) {
  BoxLossArgs<float, float> plain{};
  plain.format = BoxFormat::XYXY;
  plain.iou = plain_iou_params(1e-7f);
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return box_loss_vec_avx2(LossKind::IoU, plain, false) != nullptr;
    case Isa::Avx512: return box_loss_vec_avx512(LossKind::IoU, plain, false) != nullptr;
  }
  return false;
}

Isa best_isa() {
  Isa best = Isa::Scalar;
  for (Isa isa : kAllIsas) {
    if (isa_available(isa)) best = isa;
  }
  return best;
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : kAllIsas) {
    if (name == isa_name(isa)) return isa;
  }
  TORCH_CHECK_VALUE(false, "cpu isa: expected one of auto, scalar, avx2, avx512, got '", name, "'");
}

Isa initial_isa() {
  const char* env = std::getenv("ALWA_CPU_ISA");
  if (env == nullptr || *env == '\0' || std::string(env) == "auto") return best_isa();
  for (Isa isa : kAllIsas) {
    if (std::string(env) == isa_name(isa) && isa_available(isa)) return isa;
  }
  // (alwa_ext.cpu warns about it: a C++ warning at load time does not reach Python on every
  // torch release)
  return best_isa();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot(static_cast<int>(initial_isa()));
  return slot;
}

// torch.ops.alwa.cpu_isas(): the paths this machine can take, narrowest first.
std::vector<std::string> cpu_isas_op() {
  std::vector<std::string> names;
  for (Isa isa : kAllIsas) {
    if (isa_available(isa)) names.emplace_back(isa_name(isa));
  }
  return names;
}

std::string cpu_isa_op() { return isa_name(active_isa()); }

// torch.ops.alwa.set_cpu_isa(name): use that path from now on ("auto": the widest); returns
// the previous one.
std::string set_cpu_isa_op(const std::string& name) {
  const Isa isa = name == "auto" ? best_isa() : parse_isa(name);
  TORCH_CHECK_VALUE(isa_available(isa), "cpu isa '", name,
                    "' is not available on this CPU or build (available: ",
                    c10::Join(", ", cpu_isas_op()), ")");
  return isa_name(static_cast<Isa>(active_slot().exchange(static_cast<int>(isa))));
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_available(Isa isa) { return built_with(isa) && cpu_has(isa); }

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

BoxLossVecFn box_loss_vec_fn(LossKind kind, const BoxLossArgs<float, float>& args, bool grad) {
  switch (active_isa()) {
    case Isa::Scalar: return nullptr;
    case Isa::Avx2: return box_loss_vec_avx2(kind, args, grad);
    case Isa::Avx512: return box_loss_vec_avx512(kind, args, grad);
  }
  return nullptr;
}

FocalLossVecFn focal_loss_vec_fn(const FocalLossArgs<float, float>& args, bool grad, FocalGamma gamma) {
  switch (active_isa()) {
    case Isa::Scalar: return nullptr;
    case Isa::Avx2: return focal_loss_vec_avx2(args, grad, gamma);
    case Isa::Avx512: return focal_loss_vec_avx512(args, grad, gamma);
  }
  return nullptr;
}

DflVecFn dfl_vec_fn(const DflArgs<float, float>& args, bool grad) {
  switch (active_isa()) {
    case Isa::Scalar: return nullptr;
    case Isa::Avx2: return dfl_vec_avx2(args, grad);
    case Isa::Avx512: return dfl_vec_avx512(args, grad);
  }
  return nullptr;
}

DflIntegralVecFn dfl_integral_vec_fn(const DflIntegralArgs<float, float>& args) {
  switch (active_isa()) {
    case Isa::Scalar: return nullptr;
    case Isa::Avx2: return dfl_integral_vec_avx2(args);
    case Isa::Avx512: return dfl_integral_vec_avx512(args);
  }
  return nullptr;
}

}  // namespace cpu
}  // namespace alwa

TORCH_LIBRARY_IMPL(alwa, CatchAll, m) {
  m.impl("cpu_isa", &alwa::cpu::cpu_isa_op);
  m.impl("cpu_isas", &alwa::cpu::cpu_isas_op);
  m.impl("set_cpu_isa", &alwa::cpu::set_cpu_isa_op);
}

