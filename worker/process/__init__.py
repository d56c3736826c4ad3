"""The processing stage: Faust agents that run the rules on the event topics.

Each envelope on a ``codechat.<event>`` topic is checked for our own echoes and for
duplicates, evaluated by the pure rules engine against the state kept in a Faust table,
and the resulting action records are produced to ``codechat.actions``. Deadlines (``for`` /
``resolve_when``) fire from a once-a-second tick, and the rules directory is reloaded when
it changes or on ``SIGHUP``.
"""
