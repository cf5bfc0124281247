"""The PACS traffic benchmark (python -m bench.pacs.run)."""
