"""The ``[central]`` section: how ``smdrd central`` (`smdrd.central`) takes what the sites publish.

The broker it subscribes at is ``[mqtt]``'s (host, port, credentials, TLS, ``journal_prefix``); the store is
``[database] url`` (PostgreSQL). `smdrd.config` composes it into `~smdrd.config.Settings`.
"""

from __future__ import annotations

from pydantic import Field

from smdrd.section import Section

__all__ = ["CentralConfig"]


class CentralConfig(Section):
    """The central collector's session at the broker and its batches."""

    #: the collector's fixed client id: the broker keeps its session (and queues entries) under it while it is
    #: away. Two collectors on one broker need two ids (and then each gets every entry).
    client_id: str = Field(default="smdrd-central", min_length=1, max_length=128)
    #: the most entries stored in one PostgreSQL transaction (and acknowledged together after its commit); the
    #: central broker's ``max_inflight_messages`` bounds it too (config/mosquitto/central.conf). A batch is what has
    #: arrived, so live entries go in small ones; a backlog goes in big ones, whose rollup upserts (one per key
    #: and batch) cost less per call: bench/central.py stored a fifth more calls a second at 2000 than at 500.
    batch: int = Field(default=2000, ge=1, le=10_000)
    #: the topic filters of the sites' alerts (``<topic_prefix>/alert/<rule>``: ``smdrd/alert/+`` for sites on
    #: the default prefix, ``smdrd/+/alert/+`` for ``topic_prefix = "smdrd/<site>"``), kept in the central
    #: alerts inbox; ``[]``: no alerts kept. config/mosquitto/bridge.conf forwards both.
    alert_topics: list[str] = Field(default_factory=lambda: ["smdrd/alert/+", "smdrd/+/alert/+"], max_length=16)
