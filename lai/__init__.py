"""lai: a self-hosted router for OpenAI-compatible LLM traffic."""

__version__ = "0.1.0"
