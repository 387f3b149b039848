"""Built-in templates are registered once per content: a restart adds nothing, a changed
built-in adds a version, and an admin's own later version is not overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plinth.services import templates
from plinth.services.auth import Principal
from plinth.services.template_model import TemplateDocument
from plinth.store.db import Database
from plinth.store.migrate import upgrade


def test_registration_is_idempotent_and_follows_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(db.engine)
    admin = Principal(1, "root", 1, "default", admin=True)
    try:
        with db.session() as s:
            assert templates.register_builtin_templates(s) == ["sparse-ctr v1"]
        with db.session() as s:
            assert templates.register_builtin_templates(s) == []  # a restart
        # An admin publishes their own version; the same built-in does not override it.
        body = yaml.safe_load((templates.BUILTIN_DIR / "sparse-ctr.yaml").read_text())
        body["presets"]["platform"]["worker_cpu"] = 4
        with db.session() as s:
            view, created = templates.publish_template(s, admin, TemplateDocument(**body))
            assert created and view.version == 2
        with db.session() as s:
            assert templates.register_builtin_templates(s) == []
            assert templates.get_template(s, admin, "sparse-ctr").created_by == "root"
        # A new Plinth release ships a changed built-in: it becomes the next version.
        shipped = tmp_path / "builtin"
        shipped.mkdir()
        body["description"] = "changed upstream"
        (shipped / "sparse-ctr.yaml").write_text(yaml.safe_dump(body))
        monkeypatch.setattr(templates, "BUILTIN_DIR", shipped)
        with db.session() as s:
            assert templates.register_builtin_templates(s) == ["sparse-ctr v3"]
            assert [v.created_by for v in templates.list_versions(s, admin, "sparse-ctr")] == [
                "plinth", "root", "plinth"]  # fmt: skip
    finally:
        db.dispose()
