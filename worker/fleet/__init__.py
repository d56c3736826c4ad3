"""Many ingest processes, one owner per subscription.

The gateway keeps only the newest socket per (instance, event) and silently starves the
older one, so two processes subscribed to the same key lose events without an error.
This package makes the processes agree, through Kafka alone, on who holds which key:

* :mod:`.assignment` (pure): a key's partition of the control topic, and the
  balanced, sticky plan of which process holds which partition;
* :mod:`.handover` (pure): owned / releasing partitions, so a process that loses a
  partition keeps its socket for a grace period (make-before-break);
* :mod:`.config`: the ``ingest.ownership`` settings;
* :mod:`.ownership` (Kafka): the consumer group over the control topic that decides;
* :mod:`.roster`: starts and stops the subscriptions this process should run.
"""
