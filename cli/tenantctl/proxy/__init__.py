"""The bundled tenant-routing PostgreSQL proxy.

``wire`` (protocol bytes), ``session`` (the pure handshake state machine), ``server`` (asyncio
Protocols and the byte relay), ``routes`` (hot reload), ``admin`` (/healthz, /metrics), ``app``
(the runnable proxy).
"""
