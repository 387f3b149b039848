"""Samples for training: feature schema, Parquet reader, synthetic CTR data, metrics.

``schema`` (which columns are what), ``reader`` (Parquet -> jagged ``Batch`` with
prefetch and resume), ``synthetic`` (seeded data with a planted model and known
Bayes-optimal metrics; ``python -m plinth.data.synthetic``), ``metrics`` (AUC, log loss).
"""
