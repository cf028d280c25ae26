"""The Anthropic Messages face: ``POST /v1/messages`` for clients such as Claude Code.

Pure translation, no IO, in three modules: ``request`` turns a Messages request into the
OpenAI chat body the engine routes (so the same routing, queue, failover, recording and
metrics serve both faces), ``answer`` turns the engine's OpenAI answers back into
Anthropic messages and stream events, ``errors`` renders lai's errors in Anthropic's
shape. The HTTP endpoint is ``lai.proxy.routes.messages``.
"""
