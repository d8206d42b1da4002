"""Experiment configs: Python files whose ``get_config(arg)`` returns a ConfigDict.

A config is named ``NAME[:ARG]``: ``NAME`` is a module in this package (for
example ``small_cnn_digits``) or a path to a ``.py`` file, and ``ARG`` selects
a variant (``cpu``, ``test``, ...). Overrides ``key.sub=value`` are checked
against the config: a key that does not exist is an error, never a new field.
"""

from jaxsal.configs._loading import apply_overrides, get_config, list_configs

__all__ = ["apply_overrides", "get_config", "list_configs"]
