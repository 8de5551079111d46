"""Benchmarks of alwa_ext: loss kernels (bench_losses), a training step (bench_train_step), charts (plot)."""
