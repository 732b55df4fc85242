"""A small Flask application as an application would write it: a module logger made at import, nothing from mmaplog.

``make_app()`` builds the app; its view logs three records through the
module's ``logging.getLogger(__name__)`` (and a DEBUG one that the configured
level drops).  Whoever runs it routes the loggers (this module's, ``werkzeug``
and ``flask.app``) wherever it likes with ``logging.config.dictConfig``.
Importing this module needs flask.
"""

from __future__ import annotations

import logging
from typing import Any

import flask

__all__ = ["FRAMEWORK_LOGGERS", "make_app"]

#: Made at import, before any logging configuration: the case of every library's module-level logger.
log = logging.getLogger(__name__)
#: The framework's own loggers, routed by the configuration like the application's.
FRAMEWORK_LOGGERS = ("werkzeug", "flask.app")


def make_app() -> Any:
    """The app: ``GET /pay/<order>`` logs the request, the payment and the answer, and returns "ok"."""
    app = flask.Flask(__name__)

    @app.route("/pay/<int:order>")
    def pay(order: int) -> str:
        log.info("GET /pay/%d from %s", order, flask.request.remote_addr)
        log.debug("headers: %r", dict(flask.request.headers))
        log.info("order %d paid %.2f by %s", order, 9.5, "bob")
        log.info("order %d settled", order)
        return "ok"

    return app
