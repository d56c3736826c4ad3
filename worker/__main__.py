"""``python -m worker`` runs the ``zapflow`` command."""

from worker.cli import entry

if __name__ == "__main__":
    raise SystemExit(entry())
