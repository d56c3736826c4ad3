"""zapflow benchmarks: ``python -m bench`` (``make bench``)."""
