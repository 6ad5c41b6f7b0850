"""Benchmarks behind ``irra bench``: each module measures one part and returns a result object.

- :mod:`irra.bench.train_step`: one full training step (all losses, backward, optimiser step);
  seconds, samples/s and model FLOPs utilisation against the measured matrix-multiply peak.
- :mod:`irra.bench.encode`: inference images/s and captions/s with the same utilisation.
- :mod:`irra.bench.metrics`: chunked exact retrieval metrics against a full-argsort baseline.
- :mod:`irra.bench.data`: training-pipeline throughput per loader worker.

Shared pieces: :mod:`irra.bench.timing` (warm-up, repeats, medians),
:mod:`irra.bench.peak` (matrix-multiply peak and FLOP counting), :mod:`irra.bench.workload`
(model sizes and synthetic batches).
"""
