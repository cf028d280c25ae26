"""lai: a self-hosted router for OpenAI-compatible LLM traffic."""

import sys

__version__ = "0.1.0"

# httpx imports its command-line client (httpx._main) whenever rich, pygments and click
# are installed, which Textual and the CLI bring: ~8 MiB of resident memory and ~0.2 s of
# start-up in every lai process, for a tool lai never runs. A None entry makes that
# optional import fail, and httpx (0.28) defines a stub ``httpx.main`` instead. Nothing
# changes when httpx was imported first or stops importing it.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
