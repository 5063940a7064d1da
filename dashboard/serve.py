"""The dashboard as `facelint dashboard` and `facelint up` serve it: dashboard/app.py in
Streamlit's own ASGI app, with one middleware of ours in front.

Streamlit checks the Host header (`server.allowedHosts`, set by daemon/launch.py) on the
websocket only; its plain HTTP routes (the page, /media images, uploads, health) answer
any Host. A page elsewhere whose name is rebound to this address would then be served
the dashboard's own files under its name. Starlette's TrustedHostMiddleware refuses
those requests by the same list, so every route answers to the same names.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware


class AllowedHosts:
    """TrustedHostMiddleware for HTTP requests, built on the first request from
    Streamlit's `server.allowedHosts` (known only once Streamlit has read its flags).
    Websockets pass through: Streamlit refuses a foreign Host there itself (403)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._checked: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._checked is None:
            from streamlit import config

            hosts = list(config.get_option("server.allowedHosts")) or ["*"]
            self._checked = TrustedHostMiddleware(self.app, allowed_hosts=hosts, www_redirect=False)
        await self._checked(scope, receive, send)


app = st.App("app.py", middleware=[Middleware(AllowedHosts)])
