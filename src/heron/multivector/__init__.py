"""Multi-vector algorithms shared by the index store (serving) and the trainer: NumPy and torch only.

- :mod:`~heron.multivector.maxsim`: exact MaxSim (Chamfer) scoring — one definition for NumPy (a token
  store, reranking, brute force) and torch (padded training batches, differentiable).
- :mod:`~heron.multivector.muvera`: MUVERA fixed dimensional encodings (a point cloud → one vector).
- :mod:`~heron.multivector.crisp`: CRISP token clustering and pruning baselines (post hoc and in training).

This package is the low level: it imports nothing from :mod:`heron.retrieval`, :mod:`heron.training`,
:mod:`heron.indexing` or :mod:`heron.api` (``heron.indexing.multivector_store`` builds on it).
"""
