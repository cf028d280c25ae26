"""The HTTP face: a Quart app factory (``lai.proxy.app.create_app``) served by Hypercorn."""
