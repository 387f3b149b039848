"""Samples for training: feature schema, Parquet reader, synthetic CTR data, metrics.

``schema`` (which columns are what), ``reader`` (Parquet -> jagged ``Batch`` with
prefetch and resume), ``synthetic`` (seeded data with a planted model and known
Bayes-optimal metrics; ``python -m plinth.data.synthetic``), ``metrics`` (AUC, log loss).

Sample building (docs/data.md): ``spec`` (the build spec), ``sources`` (checked raw
inputs), ``join`` (label attribution and as-of joins as Polars plans), ``transforms``
(derived fields over Arrow), ``build`` (``plinth data build``; ``python -m
plinth.data.build``), ``manifest`` (what makes a dataset whole), ``stats`` (``plinth data
stats`` and its HTML report), ``rawlogs`` (raw logs with a planted truth).
"""
