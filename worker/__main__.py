"""``python -m worker`` runs the ``zapflow`` command."""

from worker.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
