"""The SQLite store: the embedded default, one file on the box.

Every line of SQLite code in smdrd lives in this package (a test greps for ``sqlite3``/``aiosqlite`` elsewhere):
the schema and its numbered migrations (`schema`), the journal writer (`writer`), the rows it maps
`smdrd.journal` types to (`rows`), report reads (`reports`), retention (`retention`), backup and restore
(`backup`), and the `SqliteStore` that hands these to the rest of smdrd through the protocols of `smdrd.store`.
"""
