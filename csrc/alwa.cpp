// The whole op surface of torch.ops.alwa, declared once: the ops every backend implements
// (kernel_schemas.h) and the CPU helpers below. Backends register their kernels in cpu/ and
// cuda/, autograd in autograd/ (TORCH_LIBRARY_IMPL); fake kernels, for torch.compile, are
// registered from Python (alwa_ext/ops.py, alwa_ext/weighting.py).
#include <torch/library.h>

#include "alwa/alwa_update.h"
#include "alwa/kinds.h"
#include "common/reduction.h"
#include "kernel_schemas.h"

#ifdef ALWA_PYTHON_MODULE
#include <Python.h>

namespace {

// A tuple of str from a table's names.
template <size_t N>
PyObject* names_tuple(const char* const (&names)[N]) {
  PyObject* tuple = PyTuple_New(N);
  for (size_t i = 0; i < N; ++i) PyTuple_SET_ITEM(tuple, i, PyUnicode_FromString(names[i]));
  return tuple;
}

// ((name, title, iou_family, alpha_form), ...): the loss kinds table of alwa/kinds.h.
PyObject* loss_kinds_tuple() {
  PyObject* tuple = PyTuple_New(sizeof(alwa::kLossKindNames) / sizeof(const char*));
  Py_ssize_t i = 0;
#define ALWA_ROW(kind, name, iou_family, alpha_form) \
  PyTuple_SET_ITEM(tuple, i++, Py_BuildValue("(ssOO)", name, #kind, (iou_family) ? Py_True : Py_False, (alpha_form) ? Py_True : Py_False));
  ALWA_LOSS_KINDS(ALWA_ROW)
#undef ALWA_ROW
  return tuple;
}

}  // namespace

// `import alwa_ext._C` loads this library, which runs the registrations below; the module
// carries the tables the C++ is built from (alwa_ext.kinds reads them, so Python never spells
// a kind, a reduction or a constant again). The ops are reached through torch.ops.alwa.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyModule_AddObject(module, "loss_kinds", loss_kinds_tuple());
  PyObject* formats = names_tuple(alwa::kBoxFormatNames);
  PyModule_AddObject(module, "pairwise_box_formats", PyTuple_GetSlice(formats, 0, alwa::kNumPairwiseFormats));
  PyModule_AddObject(module, "box_formats", formats);
  PyModule_AddObject(module, "reductions", names_tuple(alwa::kReductionNames));
  PyModule_AddObject(module, "avg_factor_eps", PyFloat_FromDouble(alwa::kAvgFactorEps));
  PyModule_AddObject(module, "alwa_modes", names_tuple(alwa::kAlwaModeNames));
  PyModule_AddObject(module, "alwa_updates", names_tuple(alwa::kAlwaUpdateNames));
  PyModule_AddObject(module, "alwa_statistics", names_tuple(alwa::kAlwaStatisticNames));
  PyModule_AddObject(module, "alwa_window_shape", Py_BuildValue("(ii)", alwa::kWindowRows, alwa::kWindowFields));
  return module;
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
}
