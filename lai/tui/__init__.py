"""The terminal UI: ``lai`` opens a live board, the conversations, keys and a chat.

``LaiApp`` (``lai.tui.app``) gets one :class:`~lai.tui.client.LaiClient`; screens and
widgets reach lai only through it. Nothing here builds anything at import time.
"""
