"""Templates shipped with the server (one YAML document each), registered at start.

See docs/templates.md; ``plinth.services.templates.register_builtin_templates``.
"""
