"""A trivial Faust app for the harness test: upper-cases values from one topic to another.

Run as ``python echo_app.py worker``; the broker and topics come from the environment.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["ECHO_APP_ID"],
    broker=f"kafka://{os.environ['ECHO_BROKER']}",
    store="memory://",
    web_enabled=False,
    topic_disable_leader=True,
    table_standby_replicas=0,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["ECHO_IN"], value_serializer="raw")
sink = app.topic(os.environ["ECHO_OUT"], value_serializer="raw")


@app.agent(source)
async def shout(stream):  # type: ignore[no-untyped-def]
    async for value in stream:
        await sink.send(value=value.upper())


if __name__ == "__main__":
    app.main()
