"""The SQLite study store: schema, resume bookkeeping, export."""
