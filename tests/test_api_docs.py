"""docs/api.md names every `/api` route the daemon serves, with each of its methods: the routes are walked on
the HTTP app `smdrd run` builds (every feature), so a route added without its line in the document fails here,
and so does a documented route the code no longer serves."""

from __future__ import annotations

import re
from pathlib import Path

from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.testing import daemon_config

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
#: `GET /api/x`, `PUT /api/x/<name>`, or a bare `/api/x` (a read: GET); a query string and a trailing
#: ``...`` (`/api/reports...`, the prose's "and under it") are left off.
_ROUTE = re.compile(r"`(?:(GET|POST|PUT|DELETE) )?(/api(?:/[^`\s?]*)?)[`?]")


def _shape(path: str) -> str:
    """A path with its parameters blanked: ``/api/users/{name}``, ``/api/users/<name>`` -> ``/api/users/{}``."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path)


def _matches(documented: str, served: str) -> bool:
    """``/api/reports/{}`` (the document's ``<kind>``) covers each kind the code serves as a route of its own."""
    pattern = "/".join("[^/]+" if part == "{}" else re.escape(part) for part in documented.split("/"))
    return re.fullmatch(pattern, served) is not None


def documented() -> set[tuple[str, str]]:
    return {(m[1] or "GET", _shape(m[2].removesuffix("..."))) for m in _ROUTE.finditer(API_DOC.read_text())}


def served(tmp_path: Path) -> set[tuple[str, str]]:
    daemon = Daemon(Settings.model_validate(daemon_config(tmp_path, [])))
    daemon.build()
    assert daemon.http is not None
    out = set()
    for route in daemon.http.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or "")
        if path.startswith("/api") and route.method != "HEAD":
            out.add((route.method, _shape(path)))
    return out


def test_every_api_route_is_documented_with_its_methods(tmp_path: Path) -> None:
    routes, docs = served(tmp_path), documented()
    assert len(routes) >= 35 and ("DELETE", "/api/users/{}") in routes  # the walk saw every feature's routes
    missing = sorted(f"{m} {p}" for m, p in routes if not any(dm == m and _matches(dp, p) for dm, dp in docs))
    assert missing == [], f"served but not in docs/api.md: {missing}"


def test_every_documented_api_route_is_served(tmp_path: Path) -> None:
    routes, docs = served(tmp_path), documented()
    stale = sorted(f"{m} {p}" for m, p in docs if not any(sm == m and _matches(p, sp) for sm, sp in routes))
    assert stale == [], f"in docs/api.md but not served: {stale}"
