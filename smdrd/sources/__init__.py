"""Sources: the async edges that read bytes from PBXs (TCP client and server, serial ports, files).

A source owns its resource and its reconnect loop, and hands bytes to an `Ingest` (the core's entry point)
through `Stream` objects, one per connection. It never frames, parses or stores anything itself.
"""
