"""A Faust app whose fetcher loses one record on its way to the agent, as Faust does at times
around a rebalance (see worker/consumer.py).

Run as ``python dropping_app.py worker``; the broker, topic and the offset to lose come from
the environment. The agent appends each offset it processes to ``DROP_OUT``. With
``DROP_CONSUMER=gapless`` it consumes with zapflow's consumer, with ``stock`` with Faust's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust

from worker.consumer import use_gapless_consumer

app = faust.App(
    os.environ["DROP_APP_ID"],
    broker=f"kafka://{os.environ['DROP_BROKER']}",
    store="memory://",
    web_enabled=False,
    topic_disable_leader=True,
    table_standby_replicas=0,
    broker_commit_interval=0.5,
    consumer_auto_offset_reset="earliest",
)
if os.environ["DROP_CONSUMER"] == "gapless":
    use_gapless_consumer(app)
source = app.topic(os.environ["DROP_TOPIC"], value_serializer="raw")
out = Path(os.environ["DROP_OUT"])
lose = int(os.environ["DROP_OFFSET"])


@app.agent(source)
async def record(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        with out.open("a") as f:
            f.write(f"{event.message.offset}\n")


consumer: Any = app.consumer
deliver = consumer.callback
lost: list[int] = []


async def losing(message: Any) -> None:
    if message.offset == lose and not lost:
        lost.append(message.offset)  # fetched, counted as read, never handed to the agent
        return
    await deliver(message)


consumer.callback = losing

if __name__ == "__main__":
    app.main()
