"""The Sluice ops console: `streamlit run ui/app.py`. The router only; pages are in `ui/views/`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from store.db import StoreNotReady
from ui import state

VIEWS = Path(__file__).resolve().parent / "views"


def main() -> None:
    st.set_page_config(page_title="Sluice console", layout="wide")
    pages = [
        st.Page(VIEWS / "overview.py", title="Overview", url_path="overview", default=True),
        st.Page(VIEWS / "calibration.py", title="Calibration", url_path="calibration"),
        st.Page(VIEWS / "models.py", title="Models & cycles", url_path="models"),
        st.Page(VIEWS / "whatif.py", title="What-if", url_path="whatif"),
    ]
    page = st.navigation(pages)
    try:
        state.engine()
    except StoreNotReady as error:
        st.error(f"{error}.")
        st.stop()
    with st.sidebar:
        st.caption(f"Database: `{state.database_label()}`")
        if st.button("Refresh figures", key="refresh"):
            state.refresh()
    page.run()


if __name__ == "__main__":
    main()
