"""One module per command: ``run(args) -> exit code``. Parsing lives in ``lai.cli``."""
