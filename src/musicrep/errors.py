"""Error types anything may raise or catch (a torch-free leaf).

Each carries one line for the user: the command lines print it and exit 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A problem with the configuration, worded for the user (one line)."""
