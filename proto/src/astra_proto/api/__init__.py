"""The REST contracts of each service: the bodies its routes take and answer.

``astra_proto.api.<service>`` holds every model that crosses that service's HTTP boundary;
the service's routes and its client (``astra_common.clients.<service>``) import the same
model. Each module lists its published contracts in ``CONTRACTS``; their JSON Schemas are
``proto/schemas/<service>.<Model>.json``.
"""

SERVICES = ("envhost", "synth", "rollout", "trainer")
"""The services whose APIs are contracts here, one module each."""
