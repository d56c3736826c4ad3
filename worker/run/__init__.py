"""``zapflow run`` (all stages in one process) and ``zapflow dev`` (the local demo)."""
