"""zapflow: CodeChat WhatsApp gateway events to Kafka, YAML rules on Faust, idempotent actions."""

__version__ = "0.1.0"
