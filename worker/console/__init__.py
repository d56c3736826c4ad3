"""Terminal tools for people running zapflow: ``tail``, ``status`` and the live view of ``dev``."""
