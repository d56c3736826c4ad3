from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from worker.ingest.producer import KeyPartitions


@pytest.mark.parametrize("count", [1, 3, 8, 12])
def test_partition_matches_aiokafkas_default_partitioner(count: int) -> None:
    partitions = KeyPartitions(max_keys=50)
    keys = [f"shop-bot:55{i}@s.whatsapp.net".encode() for i in range(200)] + [b"shop-bot"]
    for key in keys * 2:  # the second round comes from the cache (and its clearing)
        expected = DefaultPartitioner()(key, list(range(count)), list(range(count)))
        assert partitions.partition(key, count) == expected
