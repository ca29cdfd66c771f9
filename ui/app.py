"""The Sluice ops console: `streamlit run ui/app.py` (or `sluice ui`). The router and the sign-in gate only; pages
are in `ui/views/`, sign-in in `ui/auth.py`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from store.db import StoreNotReady
from ui import auth, state

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = (  # (file, title, url path): the order of the sidebar
    ("overview.py", "Overview", "overview"),
    ("policy.py", "Policy", "policy"),
    ("calibration.py", "Calibration", "calibration"),
    ("models.py", "Models & cycles", "models"),
    ("whatif.py", "What-if", "whatif"),
    ("audit.py", "Audit", "audit"),
)


def _home() -> None:
    """The root URL: straight on to the Overview, so that `/` and `/overview` both show it."""
    st.switch_page(VIEWS / "overview.py")


def main() -> None:
    st.set_page_config(page_title="Sluice console", layout="wide")
    try:
        engine = state.engine()
    except StoreNotReady as error:
        st.error(f"{error}.")
        st.stop()
    account = auth.current(engine)
    if account is None:
        st.navigation([st.Page(lambda: auth.sign_in_page(engine), title="Sign in", url_path="sign-in")],
                      position="hidden").run()
        return
    pages = [st.Page(VIEWS / file, title=title, url_path=path) for file, title, path in PAGES]
    page = st.navigation([st.Page(_home, title="Home", default=True), *pages], position="hidden")
    with st.sidebar:
        for link in pages:
            st.page_link(link)
        st.divider()
        st.caption(f"Signed in as **{account.username}** ({account.role.value})")
        if st.button("Sign out", key="sign-out"):
            auth.sign_out()
        st.caption(f"Database: `{state.database_label()}`")
        if st.button("Refresh figures", key="refresh"):
            state.refresh()
    page.run()


if __name__ == "__main__":
    main()
