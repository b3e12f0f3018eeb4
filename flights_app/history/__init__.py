"""The history: every scored state, window record and alert kept as Parquet (docs/history.md).

layout.py (where files are and what their names say), rows.py (columns per kind), store.py (files
written whole, compacted, expired), writer.py (the consumer group that writes them), query.py (DuckDB).
"""
