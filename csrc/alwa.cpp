// The whole op surface of torch.ops.alwa: every schema is declared here, once. Backends
// register their kernels in cpu/ and cuda/ with TORCH_LIBRARY_IMPL; fake kernels and
// autograd formulas are registered from Python (alwa_ext/ops.py).
#include <torch/library.h>

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
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  // Returns (loss, grad_pred, grad_target); each gradient is that of the weighted, reduced
  // loss, or an empty tensor when not asked for. With box_format "deltas", pred holds deltas
  // against `anchors` (mmdet DeltaXYWHBBoxCoder: delta_means, delta_stds, wh_ratio_clip) and
  // grad_pred is w.r.t. the deltas; anchors are constants.
  m.def(
      "box_loss(Tensor pred, Tensor target, Tensor? weight, Tensor? avg_factor, Tensor? anchors, "
      "str loss, str reduction, str box_format, float eps, float beta, float alpha, "
      "float focal_gamma, float[] delta_means, float[] delta_stds, float wh_ratio_clip, "
      "bool grad_pred, bool grad_target) -> (Tensor, Tensor, Tensor)",
      tags);
  m.def("box_iou(Tensor boxes1, Tensor boxes2, str kind, str box_format, float eps) -> Tensor",
        tags);
  m.def(
      "box_iou_backward(Tensor grad, Tensor boxes1, Tensor boxes2, str kind, str box_format, "
      "float eps, bool grad_boxes1, bool grad_boxes2) -> (Tensor, Tensor)",
      tags);
}
