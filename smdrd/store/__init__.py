"""SQLite storage: the schema and its migrations, and the one writer task that commits in batches.

Kept behind small interfaces (`JournalWriter.submit`, `schema.migrate`) so that another store (a central
PostgreSQL) is an addition, not a rewrite.
"""
