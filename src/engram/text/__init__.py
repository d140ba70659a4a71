"""The plaintext memory tier: ingest, query analysis, retrieval strategies."""
