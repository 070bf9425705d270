"""The PostgreSQL store: the same journal, calls, rollups, outbox and report reads as `smdrd.store.sqlite`, in a
PostgreSQL database named by ``[database] url = "postgresql://..."`` (docs/scaling.md).

The driver is **psycopg 3** (``psycopg[binary]``), not asyncpg:

- one driver, two faces: the CLI (``smdrd report``, ``import``) and the report builders call the store
  synchronously (`smdrd.store.api.ReportReader` is a plain iterator protocol, run in a thread by the HTTP
  server), the daemon's journal writer and outbox asynchronously; psycopg has both over the same types and
  adapters, asyncpg only the second;
- ``COPY`` from Python for the journal writer's batches (a batch is copied into a TEMP table and moved into
  ``calls`` and the rollups by one statement), and server-side cursors for a call listing read as consumed;
- it is the PostgreSQL project's own driver family (libpq), packaged in Debian, typed (``py.typed``), and its
  ``binary`` extra ships libpq in the wheel, so ``pip install`` needs no compiler or system library.

Nothing outside ``smdrd/store/postgres/`` imports ``psycopg``; the SQL here follows the SQLite store's and
shares its definitions (the rollups' dimensions, the call row layout, the report reads' planning), so the two
stores give the same figures (tests/test_reports.py runs against both).
"""
