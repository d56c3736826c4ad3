"""A faithful CodeChat ``whatsapp-api`` 1.3.x gateway simulator (``zapflow simulate``).

Socket semantics, payloads and REST behaviour follow upstream, quirks included; where the
simulator departs from upstream, the code says so and why.
"""

from worker.simulator.hub import Counters, SocketInfo
from worker.simulator.simulator import Instance, RestCall, Simulator

__all__ = ["Counters", "Instance", "RestCall", "Simulator", "SocketInfo"]
