"""The console's pages: each module has one `render()` and runs it only when Streamlit runs it as a page."""
