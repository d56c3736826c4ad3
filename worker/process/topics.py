"""The processing stage's topics: which of them Faust would create for itself.

The stage creates all its topics before Faust starts (:func:`worker.topics.ensure_topics`),
Faust's own included, so that none of them appears while events already flow.
"""

from __future__ import annotations

from typing import Any


def internal_topics(app: Any, *extra: str) -> dict[str, dict[str, str]]:
    """The topics a Faust app would create for itself: each table's compacted changelog, and
    ``extra`` ones (the tick and repartition topics), with their settings.

    Created before the worker starts, with the tables' partition count. Left to Faust, they
    appear while the worker is already taking events, and an event that arrives before a
    changelog is in the client's metadata fails every table write with ``PartitionsMismatch``
    ("changelog topic ... has 0 partitions").
    """
    topics = {
        table.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"}
        for table in app.tables.values()
    }
    topics.update({name: {} for name in extra})
    return topics
