"""Online inference for Plinth model packages (DESIGN.md, "Serving").

- :mod:`plinth.serve.host`: the served model and its atomic version/delta swaps;
- :mod:`plinth.serve.batcher`: the dynamic batcher (max batch rows, max queue delay,
  bounded queue);
- :mod:`plinth.serve.protocol`: request bodies -> feature records (pure);
- :mod:`plinth.serve.app`: the HTTP app (Open Inference Protocol v2, ``/predict``,
  ``/metrics``, control);
- ``python -m plinth.serve PACKAGE``: the process.
"""
