"""The ``[mqtt]`` section of `smdrd.mqtt`'s publisher. `smdrd.config` composes it into
`~smdrd.config.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from smdrd.section import Section

__all__ = ["MqttConfig"]


class MqttConfig(Section):
    """The MQTT broker that alerts (and optionally every call) are published to (see docs/alerts.md).

    Alerts wait in the database's outbox until the broker acknowledges them (QoS 1), so the broker may be down
    for as long as it likes. The daemon's status is the retained topic ``<topic_prefix>/status`` (``online``;
    ``offline`` as the last will, and on a clean stop).
    """

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="smdrd", min_length=1)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: a file holding the password (a systemd credential); one trailing newline is ignored.
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    #: a client certificate and its key, for brokers that authenticate clients by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: skip the check of the broker certificate's host name (a broker reached by IP address): not for the internet.
    tls_insecure: bool = False
    publish_calls: bool = False
    #: publish every journal entry (the raw line, its status and its rated calls; never an authorisation code)
    #: to ``<journal_prefix>/<site name>/journal/<source>``, at least once, for a central collector
    #: (``smdrd central``, docs/scaling.md). Off: nothing of the sort is read or sent.
    publish_journal: bool = False
    #: the first topic levels of the journal topics; the central collector subscribes to
    #: ``<journal_prefix>/+/journal/+``.
    journal_prefix: str = Field(default="smdrd", min_length=1)
    #: retained state topics: ``<topic_prefix>/state`` (calls and cost today and this month, per department),
    #: ``<topic_prefix>/source/<name>`` (each source up or down) and ``<topic_prefix>/last_call``.
    publish_state: bool = False
    #: Home Assistant MQTT discovery (one device per site; turns ``publish_state`` on).
    homeassistant: bool = False
    #: Home Assistant's discovery prefix (its MQTT integration's setting).
    discovery_prefix: str = Field(default="homeassistant", min_length=1)
    #: the retained state is refreshed at most this often after new calls, in seconds (and every minute anyway).
    state_interval: float = Field(default=10.0, gt=0, le=3600)
    keepalive: int = Field(default=60, ge=5)
    #: reconnect delays, in seconds: jittered, growing from the first to the second.
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    #: how long one publish may wait for the broker's acknowledgement, in seconds.
    publish_timeout: float = Field(default=10.0, gt=0)
    #: alerts published at once while draining (acknowledged as a window, kept in order on the wire).
    window: int = Field(default=64, ge=1, le=1000)
    #: ``publish_journal``: seconds the central store's confirmed point may stay behind entries the broker
    #: acknowledged before the journal cursor goes back to it and sends them again (docs/central.md).
    confirm_timeout: float = Field(default=60.0, ge=1, le=86_400)

    @field_validator("topic_prefix", "discovery_prefix", "journal_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"expected a topic such as smdrd or site/hq/smdrd (no wildcards, no leading or "
                             f"trailing /), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file: set one, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: set both (a client certificate needs its key) or neither")
        return self

    @property
    def state_topics(self) -> bool:
        """Whether the retained state topics are published (``publish_state``, or Home Assistant's)."""
        return self.publish_state or self.homeassistant
