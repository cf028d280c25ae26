"""The Quart app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from quart import Quart

from lai.engine.events import ConfigReloaded
from lai.proxy.access import AccessLog, ASGIApp, install_route_labels
from lai.proxy.auth import install_auth
from lai.proxy.errors import install_error_handlers
from lai.proxy.eventlog import install_event_log
from lai.proxy.metrics import install_metrics
from lai.runtime import Runtime


class Routes:
    """An ASGI app: a request whose method and path are a key of ``routes`` goes to that
    endpoint, any other to ``chain``. ``chain`` must answer those requests the same way
    (here it does: each endpoint in it recognises its own route, exactly written or
    not), so that the table is only a shortcut."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[Any, Any, Any], Awaitable[None]]],
                 chain: ASGIApp) -> None:
        self.routes = routes
        self.chain = chain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            serve = self.routes.get((scope["method"], scope["path"]))
            if serve is not None:
                await serve(scope, receive, send)
                return
        await self.chain(scope, receive, send)


def create_app(runtime: Runtime, *, manage_runtime: bool = True) -> Quart:
    """Build the HTTP app around ``runtime``.

    With ``manage_runtime`` the app starts the runtime when it starts serving and closes
    it (flushing the recorder) when it stops; a caller that owns the runtime passes False.
    """
    from lai.proxy.routes import (
        admin,
        chat,
        conversations,
        embeddings,
        health,
        images,
        messages,
        models,
        responses,
    )
    from lai.proxy.routes import metrics as metrics_routes
    from lai.proxy.routes import stats as stats_routes

    app = Quart("lai")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.server.max_body_size
    app.config["BODY_TIMEOUT"] = 120
    app.config["RESPONSE_TIMEOUT"] = None
    app.extensions["lai.runtime"] = runtime
    install_error_handlers(app)

    def _reloaded(event: object) -> None:
        # A reload may change the body limit; Quart reads it from its config.
        if isinstance(event, ConfigReloaded) and event.ok:
            app.config["MAX_CONTENT_LENGTH"] = runtime.settings.server.max_body_size

    runtime.engine.events.subscribe(_reloaded)  # type: ignore[arg-type]
    install_route_labels(app)  # before auth, so that refused requests are labelled too
    install_auth(app)
    for module in (chat, responses, embeddings, models, health, admin, images, conversations):
        app.register_blueprint(module.bp)
    # Metrics count engine events from now on, whether or not /metrics is ever scraped.
    metrics = install_metrics(runtime)
    install_event_log(runtime)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(stats_routes.bp)
    # The hot path: POST /v1/chat/completions is served before Quart's request machinery;
    # it asks Quart's URL map about any other path, so the two never disagree on a route.
    chat_endpoint = chat.ChatEndpoint(runtime, app.asgi_app, app.url_map)
    # The Anthropic Messages face, Anthropic-shaped errors included (routes/messages.py).
    messages_endpoint = messages.MessagesEndpoint(runtime, chat_endpoint)
    # POST /v1/responses likewise, so a client that leaves always lets go of its request.
    responses_endpoint = responses.ResponsesEndpoint(runtime, messages_endpoint, app.url_map)
    # Each of them passes on what is not its own, down to Quart; the routes written as
    # clients write them go to their endpoint at once (every request passed all three).
    endpoint = Routes({
        ("POST", chat.PATH): chat_endpoint.serve,
        ("POST", messages.MESSAGES): partial(messages_endpoint.serve, path=messages.MESSAGES),
        ("POST", messages.COUNT_TOKENS): partial(messages_endpoint.serve,
                                                 path=messages.COUNT_TOKENS),
        ("POST", responses.PATH): responses_endpoint.serve,
    }, responses_endpoint)
    # Outermost: the request id and the access log cover every face.
    app.asgi_app = AccessLog(runtime, endpoint, metrics)  # type: ignore[method-assign,assignment]

    if manage_runtime:

        @app.while_serving
        async def _lifespan():  # type: ignore[no-untyped-def]
            await runtime.start()
            try:
                yield
            finally:
                await runtime.close()

    return app
