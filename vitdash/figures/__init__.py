"""Plotly figure builders, one module per analysis; nothing here imports streamlit."""
