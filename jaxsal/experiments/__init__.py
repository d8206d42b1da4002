"""Experiments behind the ``jaxsal`` commands: each trains or reuses a model and writes results.

``grid_pointing``: the grid pointing game for base methods alone, with CGI
and with VAR (``jaxsal grid-pointing``).
"""

from jaxsal.experiments import grid_pointing as grid_pointing

__all__ = ["grid_pointing"]
