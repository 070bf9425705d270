"""Benchmark of the tariff kept in the database: what one save of a large deck costs in the console.

Run ``.venv/bin/python bench/tariff_db.py [--prefixes N]``; prints one JSON object. Steps, each timed: read the
CSV deck into rules (`smdrd.tariffs.read_csv`), make the version's document, save it (`TariffStore.save`, JSON in
SQLite), load it back (`current`) and check it (`tariff_config`, what a page does once per version), compile it
(`Rater.from_config`, what the save and the daemon's swap do), and, for comparison on the same machine, compile
the deck from its file as ``source = "files"`` does. The deck is `bench.rating`'s generated one.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench.rating import SITE, write_deck
from smdrd.config import TariffConfig
from smdrd.rating import Rater
from smdrd.store import open_store
from smdrd.store.api import Actor
from smdrd.tariffs import document, read_csv, tariff_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefixes", type=int, default=100_000)
    args = parser.parse_args()
    out: dict[str, float | int] = {"prefixes": args.prefixes}
    with tempfile.TemporaryDirectory() as tmp:
        deck = Path(tmp) / "deck.csv"
        write_deck(deck, args.prefixes, random.Random(7))
        base = TariffConfig(currency="GBP")

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            result = fn()
            out[name] = round(time.perf_counter() - start, 3)
            return result

        rules = timed("read_csv_s", lambda: read_csv(deck.read_text(), "deck.csv", {}))
        doc = timed("document_s", lambda: document("longest-prefix", {}, rules))
        out["document_bytes"] = len(json.dumps(doc, separators=(",", ":")))
        tariffs = open_store(Path(tmp) / "calls.db").tariffs()
        try:
            timed("save_s", lambda: tariffs.save(doc, expected=0, at=0, actor=Actor("bench"), note="", action="x",
                                                 target="deck", before=None, after=None))
            version = timed("load_s", tariffs.current)
        finally:
            tariffs.close()
        config = timed("check_s", lambda: tariff_config(base, version.document if version else None))
        timed("compile_s", lambda: Rater.from_config(SITE, config))
        # For comparison, on this machine now: the same deck compiled from the file, as source = "files" does.
        timed("compile_from_file_s", lambda: Rater.from_config(SITE, TariffConfig(currency="GBP", decks=[deck])))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
