"""Vendor parser plugins, installed as ``smdrd.parsers``.

One module per PBX family. Each defines a `smdrd.parsing.Parser` subclass and is registered under the
entry-point group ``smdrd.parsers`` in ``pyproject.toml``; a third-party package adds a PBX the same way.
Parsers are pure: they see decoded lines, never a socket or a database.
"""
