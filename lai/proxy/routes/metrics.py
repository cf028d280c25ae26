"""GET /metrics: the runtime's Prometheus metrics in the text exposition format.

Open by default, like most exporters on a home network. With ``server.metrics_auth``
(and ``server.auth``) the app-wide auth hook (``lai.proxy.auth``) asks for a valid key
here as on ``/v1``; over the admin unix socket no key is needed.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response

from lai.proxy.deps import runtime
from lai.proxy.metrics import install_metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
async def metrics() -> Response:
    """The metrics text (``CONTENT_TYPE_LATEST``)."""
    metrics = install_metrics(runtime())
    await metrics.refresh_database_size()  # in a thread, cached
    # Rendering reads engine state, which only this event loop changes: no thread.
    body = metrics.render()
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)
