"""One blueprint per module; ``lai.proxy.app`` registers them."""
