"""Configuration: ``config.toml`` parsed into frozen pydantic models.

``lai.config.models`` holds the models and imports nothing but pydantic, so the engine can
use them; ``lai.config.loader`` reads files (tomlkit) and applies environment overrides;
``lai.config.edit`` changes a file in place, keeping the user's comments and order.
"""
