"""Issue 15: a viewer cannot change anything. Every route of the daemon's HTTP app (every feature built, as
`smdrd run` builds them) declares who may use it, and no route that changes something (any method but GET and
HEAD) lets a viewer or the read-only service token in, except the self-service ones every signed-in person
needs (signing in and out, their own API tokens, address and password). The server refuses a route that declares nothing
(test_console_http), so a route added later without roles fails closed and one added with a viewer fails here."""

from __future__ import annotations

from pathlib import Path

from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.http import PUBLIC, SERVICE
from smdrd.testing import daemon_config

#: changes a person makes to their own session, tokens, address or password; open to every role that can sign in.
SELF_SERVICE = {"/login", "/logout", "/account/tokens", "/account/tokens/revoke", "/account/email",
                "/account/password"}


def test_no_route_that_changes_something_lets_a_viewer_or_the_service_token_in(tmp_path: Path) -> None:
    settings = Settings.model_validate(daemon_config(tmp_path, []))
    daemon = Daemon(settings)
    daemon.build()
    assert daemon.http is not None
    walked: dict[tuple[str, str], frozenset[str]] = {}
    for route in daemon.http.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or info.get("prefix") or "")
        roles = getattr(route.handler, "smdrd_roles", None)
        assert roles is not None, f"{route.method} {path} declares no roles"
        walked[(route.method, path)] = roles
    changing = {key: roles for key, roles in walked.items() if key[0] not in ("GET", "HEAD")}
    # The walk really saw the console's forms (it cannot pass on an app it did not build).
    assert {path for _, path in changing} >= SELF_SERVICE, sorted(walked)
    for (method, path), roles in changing.items():
        if path in SELF_SERVICE:
            continue
        assert roles is not PUBLIC and roles, f"{method} {path} is open to anyone"
        assert "viewer" not in roles and SERVICE not in roles, f"{method} {path} lets {sorted(roles)} change it"
    # Reads stay readable by a viewer: the reports and the metrics.
    assert "viewer" in walked[("GET", "/reports")] and "viewer" in walked[("GET", "/metrics")]
    # Calls and alerts: everyone reads (a manager their departments'); admins and managers act on alerts.
    for path in ("/calls", "/calls/{id}", "/api/calls", "/api/calls/{id}", "/alerts", "/api/alerts"):
        assert {"viewer", "manager", "admin"} <= walked[("GET", path)], path
    for path in ("/alerts/acknowledge", "/alerts/snooze", "/api/alerts/{id}/acknowledge", "/api/alerts/{id}/snooze"):
        assert walked[("POST", path)] == {"admin", "manager"}, path
    for method, path in (("GET", "/upload"), ("POST", "/upload"), ("POST", "/api/upload"),
                         ("GET", "/upload/jobs/{id}"), ("GET", "/api/upload/jobs/{id}")):
        assert walked[(method, path)] == {"admin"}, path
    # The overview and its event stream: every role reads them (a manager their departments'), nobody signed out.
    for path in ("/", "/overview/events"):
        assert walked[("GET", path)] >= {"admin", "manager", "viewer", SERVICE}, path
    assert walked[("GET", "/console/static/overview/{name}")] is PUBLIC
    # Rates: everyone reads the rules, the history and the tester; only an admin changes them.
    for path in ("/rates", "/rates/test", "/rates/export.csv", "/api/tariff", "/api/tariff/test",
                 "/api/tariff/rules/{position}"):
        assert walked[("GET", path)] >= {"admin", "manager", "viewer"}, path
    for method, path in (("POST", "/rates"), ("POST", "/rates/{position}"), ("POST", "/rates/{position}/move"),
                         ("POST", "/rates/import"), ("POST", "/rates/rerate"), ("GET", "/rates/rerate"),
                         ("PUT", "/api/tariff"), ("POST", "/api/tariff/rules"),
                         ("PUT", "/api/tariff/rules/{position}"), ("DELETE", "/api/tariff/rules/{position}")):
        assert walked[(method, path)] == {"admin"}, path
    # The directory: everyone reads it (a manager their departments'); the export holds every department, so
    # not a manager; only an admin changes it.
    for path in ("/directory/extensions", "/directory/departments", "/api/directory/extensions",
                 "/api/directory/departments"):
        assert walked[("GET", path)] >= {"admin", "manager", "viewer", SERVICE}, path
    for path in ("/directory/export.csv", "/api/directory/export"):
        assert walked[("GET", path)] >= {"admin", "viewer"} and "manager" not in walked[("GET", path)], path
    for method, path in (("POST", "/directory/extensions/{number}/name"),
                         ("POST", "/directory/extensions/{number}/move"), ("POST", "/directory/departments"),
                         ("POST", "/directory/departments/{name}"), ("POST", "/directory/departments/{name}/delete"),
                         ("POST", "/directory/import"),
                         ("PUT", "/api/directory/extensions/{number}"), ("POST", "/api/directory/departments"),
                         ("PUT", "/api/directory/departments/{name}"), ("DELETE", "/api/directory/departments/{name}"),
                         ("POST", "/api/directory/import")):
        assert walked[(method, path)] == {"admin"}, path
    # Scheduled reports: admins and managers (their own schedules, their departments); viewers have none.
    for path in ("/schedules", "/schedules/{id}"):
        assert walked[("GET", path)] == {"admin", "manager"}, path
    for path in ("/schedules", "/schedules/{id}", "/schedules/{id}/delete"):
        assert walked[("POST", path)] == {"admin", "manager"}, path
    # Users: admins only, pages and API alike (smdrd.console.users).
    for method, path in (("GET", "/users"), ("POST", "/users"), ("GET", "/users/{name}"), ("POST", "/users/{name}"),
                         ("POST", "/users/{name}/password"), ("POST", "/users/{name}/unlock"),
                         ("POST", "/users/{name}/remove"), ("GET", "/api/users"), ("POST", "/api/users"),
                         ("GET", "/api/users/{name}"), ("PUT", "/api/users/{name}"),
                         ("DELETE", "/api/users/{name}")):
        assert walked[(method, path)] == {"admin"}, path
