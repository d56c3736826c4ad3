"""A single-node Apache Kafka (KRaft) broker run from Maven Central jars, for development and tests."""
