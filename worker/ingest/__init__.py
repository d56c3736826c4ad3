"""Ingest: keep one WebSocket subscription per (instance, event) and put every frame into Kafka.

Pure parts: :mod:`.config` (settings), :mod:`.ids` (time-ordered ids), :mod:`.envelope`
(the Kafka value), :mod:`.keys` (the Kafka key), :mod:`.backoff` (reconnect delays).
I/O edges: :mod:`.subscription` (sockets), :mod:`.producer` (Kafka), :mod:`.spool` (disk),
tied together by :mod:`.service`.
"""
