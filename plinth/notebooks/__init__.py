"""What runs inside a notebook workload (``python -m plinth.notebooks.launch``).

The control plane's side of notebooks (sessions, idle culling) lives in
``plinth.services.notebooks`` and ``plinth.services.notebook_monitor``; this package
only starts JupyterLab in a replica and never imports the control plane.
"""
