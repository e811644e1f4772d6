"""One small typed async client per service (``astra_common.clients.<service>``), over the
contracts of ``astra_proto.api.<service>``. See ``base`` for errors and retries."""

from astra_common.clients.base import ServiceClient, ServiceError, ServiceUnreachable

__all__ = ["ServiceClient", "ServiceError", "ServiceUnreachable"]
