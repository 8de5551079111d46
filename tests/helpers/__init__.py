"""What the tests share (tests/ is on sys.path while pytest runs, because tests/conftest.py is
there, so any test file, tests/harness/ included, imports these as ``from helpers.boxes import
random_boxes``):

- ``boxes``: box generators (ordinary, delta-coded, degenerate pairs) and the tolerance tables;
- ``compare``: a loss with its gradients, fused against the eager reference;
- ``cuda_host``: the CUDA kernels executed on the host (``on_host_cuda()``, the emulated
  device's controls, its launch log);
- ``devices``: ``DEVICES`` and ``CUDA_KERNELS`` (the ``device`` and ``cuda_kernels`` fixtures'
  parameters), ``running_on`` and ``requires_cuda``;
- ``raw_ops``: direct torch.ops.alwa calls with the public wrappers' defaults;
- ``variants``: every loss kind, and the options with their own code paths (Alpha-IoU, focal);
- ``alwa``: ALWA's synthetic loss sequences and a helper feeding them to a module;
- ``distributed``: multi-process (gloo) runs without port races.
"""
