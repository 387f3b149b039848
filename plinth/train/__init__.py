"""Training CTR models on dynamic embedding tables; see docs/training.md.

``config`` (the YAML config and its errors), ``models`` (LR, FM, DeepFM, Wide&Deep, DCN-v2,
DLRM), ``trainer`` (loops, checkpoints, resume), ``package`` (model packages and deltas,
and loading them for inference), ``cli`` (``plinth train local`` /
``python -m plinth.train local``).
"""
