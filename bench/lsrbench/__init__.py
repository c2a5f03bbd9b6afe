"""Helpers of ``bench/sparse_engines.py``: the learned-sparse engine benchmark.

Modules: ``data`` (the engine-neutral vector sets every engine is built from), ``synth`` (calibrated
synthetic corpora), ``engines`` (one adapter per engine), ``worker`` (build / search in a child
process), ``metrics`` (recall, latency summaries), ``report`` (JSON → Markdown table and plot).
"""
