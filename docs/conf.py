"""Sphinx configuration for the jaxsal docs (Sphinx + MyST + autodoc, theme furo).

Build offline, warnings as errors:

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

# Autodoc imports jaxsal; on a machine with an accelerator it must not grab it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.abspath(".."))

import jaxsal

project = "jaxsal"
author = "the jaxsal authors"
copyright = "the jaxsal authors"
version = release = jaxsal.__version__

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: Markdown pages with fenced directives, anchors for headings, $math$.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# Autodoc: Google-style docstrings (Args/Returns/Raises/Example) via napoleon.
autosummary_generate = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# Nothing is fetched at build time: no intersphinx, no remote images.
html_theme = "furo"
html_title = f"jaxsal {release}"
html_static_path = []
