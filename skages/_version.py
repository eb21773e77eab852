"""The package version, single source for ``pyproject.toml`` and ``skages.__version__``."""

__version__ = "0.1.0.dev0"
