"""The store: SQLModel tables, Alembic migrations, repositories and the async recorder.

Nothing here touches a database at import time; ``open_store(url)`` builds a
:class:`Store`, ``Store.upgrade()`` migrates it, :class:`Recorder` writes engine events
into it. Repositories: ``lai.store.conversations``, ``lai.store.requests``,
``lai.store.keys`` (the proxy checks keys through ``lai.store.keyservice``, which asks
``lai.store.keylookup``).
"""

from lai.store.db import Store, open_store
from lai.store.recorder import Recorder, RecorderStats

__all__ = ["Recorder", "RecorderStats", "Store", "open_store"]
