"""Persistence: the SQLAlchemy engine, the tables every domain shares, the Alembic migrations
and the encrypted credential vault. The same migrations run on SQLite and PostgreSQL."""
