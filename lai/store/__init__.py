"""The store: SQLModel tables, Alembic migrations, repositories and the async recorder.

Nothing here touches a database at import time; ``open_store(url)`` builds one.
"""
