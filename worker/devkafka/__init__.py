"""A single-node Apache Kafka (KRaft) broker run from Maven Central jars, for dev and tests."""
