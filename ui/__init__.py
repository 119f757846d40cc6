"""Streamlit glue shared by app.py and the pages (the only package besides app_pages/ that imports streamlit)."""
