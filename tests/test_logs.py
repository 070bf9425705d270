"""The log set-up (`smdrd.logs`): a traceback in either format names the failing code and never the values its
frames held (a password being checked, a session id, a form)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import Literal

import pytest
import structlog

from smdrd.logs import configure

SECRET = "correct horse battery staple"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def check_password(password: str) -> None:
    form = {"name": "alice", "password": password}
    raise RuntimeError(f"database is locked ({len(form)} fields)")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_traceback_shows_no_local_values(fmt: Literal["console", "json"], restore_logging: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure("info", fmt)
    try:
        check_password(SECRET)
    except RuntimeError:
        structlog.get_logger("test").exception("http.handler_failed", path="/login")
    text = out.getvalue()
    assert "http.handler_failed" in text and "check_password" in text and "database is locked" in text
    assert SECRET not in text
