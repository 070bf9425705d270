"""`smdrd.testing`'s daemon helpers: the configuration every daemon test starts from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from smdrd.config import Settings, load_config
from smdrd.testing import config_toml, daemon_config, tcp_client_source, tcp_server_source


def test_the_toml_and_the_data_are_one_configuration(tmp_path: Path) -> None:
    """What a subprocess daemon reads (``config_toml``) is what an in-process one is given (the data): nested
    tables, arrays of tables at the top and inside a table, lists, dates. A writer that dropped or misplaced a
    key would make the two kinds of daemon test run different configurations."""
    config = daemon_config(
        tmp_path,
        [tcp_server_source("push", 1150, max_line_length=4096),
         {"name": "branch", "kind": "file", "format": "custom", "path": "-",
          "format_options": {"type": "csv", "columns": ["date", "time", "extension", "number", "duration"],
                             "date_format": "%Y-%m-%d", "direction": {"internal_max_digits": 4}}},
         tcp_client_source("ipo", 8808)],
        database={"commit_interval_ms": 20},
        http={"enabled": False},
        tariff={"currency": "PLN", "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60",
                                              "billing_unit": 60}]},
        departments=[{"name": "Sales", "extensions": ["200-209"],
                      "members": [{"extensions": ["205"], "valid_from": date(2026, 3, 16)}]}],
    )
    path = tmp_path / "smdrd.toml"
    path.write_text(config_toml(config))
    assert load_config(path, use_env=False).model_dump() == Settings.model_validate(config).model_dump()
    settings = Settings.model_validate(config)
    assert str(settings.database.path) == str(tmp_path / "smdrd.db")
    assert settings.database.commit_interval_ms == 20  # merged into the default section: the path stays
    assert not settings.http.enabled
    assert [s.name for s in settings.sources] == ["push", "branch", "ipo"]
