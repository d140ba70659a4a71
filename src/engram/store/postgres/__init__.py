"""PostgreSQL + pgvector store (extra `postgres`); see docs/postgres.md."""
