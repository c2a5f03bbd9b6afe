"""Training: data from train qrels (never test), losses, and trainers that write encoder checkpoints.

- :mod:`~heron.training.data`: query/document training pairs from a dataset's train split, with the
  guard that no test query reaches training.
- :mod:`~heron.training.losses`: contrastive and reconstruction losses shared by the trainers.
- :mod:`~heron.training.csr`: the CSR sparse autoencoder over frozen dense embeddings
  (``heron train csr``).
"""
