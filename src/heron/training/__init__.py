"""Training: data from train qrels (never test), losses, and trainers that write encoder checkpoints.

- :mod:`~heron.training.data`: query/document training pairs from a dataset's train split, with the
  guard that no test query reaches training; hard negatives from heron's own indexes; MS MARCO-style
  triples; teacher scores from a run file.
- :mod:`~heron.training.losses`: contrastive (InfoNCE), MarginMSE, KL distillation and reconstruction losses.
- :mod:`~heron.training.regularizers`: FLOPS, L1, IDF-aware FLOPS, the ℓ0 row threshold, the quadratic λ
  warm-up.
- :mod:`~heron.training.splade`: SPLADE and inference-free SPLADE (``heron train splade``).
- :mod:`~heron.training.prf`: the learned PRF model, with or without LoL (``heron train prf``).
- :mod:`~heron.training.csr`: the CSR sparse autoencoder over frozen dense embeddings
  (``heron train csr``).
- :mod:`~heron.training.colbert`: ColBERT-style multi-vector models, optionally CRISP (``heron train colbert``).
"""
