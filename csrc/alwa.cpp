// The whole op surface of torch.ops.alwa, declared once: the ops every backend implements
// (kernel_schemas.h) and the CPU helpers below. Backends
// register their kernels in cpu/ and cuda/, autograd in autograd/ (TORCH_LIBRARY_IMPL);
// fake kernels, for torch.compile, are registered from Python (alwa_ext/ops.py).
#include <torch/library.h>

#include "kernel_schemas.h"

#ifdef ALWA_PYTHON_MODULE
#include <Python.h>

// `import alwa_ext._C` loads this library, which runs the registrations below; the module
// itself is empty (the ops are reached through torch.ops.alwa).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif

TORCH_LIBRARY(alwa, m) {
  alwa::define_kernel_ops(m);
  // The CPU kernels' SIMD path (cpu/cpu_isa.h): the one in use, those available, and an
  // override that returns the previous one.
  m.def("cpu_isa() -> str");
  m.def("cpu_isas() -> str[]");
  m.def("set_cpu_isa(str isa) -> str");
  // Lets go of the CPU output buffers kept for reuse (cpu/reused_buffer.h).
  m.def("cpu_empty_cache() -> ()");
  // Test hook: the SIMD paths' atan2 (the one CIoU uses) on float32 tensors.
  m.def("_vec_atan2(Tensor y, Tensor x, str isa) -> Tensor");
}
