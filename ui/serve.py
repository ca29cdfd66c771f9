"""The console as `sluice ui` serves it: Streamlit's own server (`st.App` over `ui/app.py`) behind a Host allow-list.

A page on any web site can make a browser send requests to 127.0.0.1 under the site's own host name (DNS
rebinding: the name is re-pointed at 127.0.0.1 after the page loads). The console is bound to 127.0.0.1, so such a
request reaches it, but its `Host` header still names the site. Refusing every host but the console's own names
(400 before Streamlit sees the request: pages, API and websocket alike) closes that door; XSRF protection (on in
`sluice ui`) covers forms.

The loopback names are always allowed; `SLUICE_UI_ALLOWED_HOSTS` (comma-separated, `*.example.com` patterns) adds
the names a reverse proxy in front of the console forwards (`store.settings.SluiceSettings.console_hosts`).

`streamlit run ui/serve.py` finds `app` below and serves it (Streamlit's ASGI mode); `ui/app.py` stays the page
script, run per session as before.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from store.settings import SluiceSettings

app = st.App(
    Path(__file__).resolve().with_name("app.py"),
    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=SluiceSettings().console_hosts, www_redirect=False)],
)
