"""Sphinx configuration of the skages documentation."""

from __future__ import annotations

import os
import sys
from datetime import date

sys.path.insert(0, os.path.abspath(".."))

import skages

project = "skages"
author = "the skages developers"
copyright = f"{date.today().year}, {author}"
release = skages.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb", "examples"]

html_theme = "pydata_sphinx_theme"
html_title = f"skages {release}"
html_static_path = ["_static"]
html_css_files = ["skages.css"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "astropy": ("https://docs.astropy.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
}
# The documentation builds offline (CI has no internet): intersphinx inventories are
# optional and their absence must not turn into an error under -W.
intersphinx_disabled_reftypes = ["*"]
if os.environ.get("SKAGES_DOCS_OFFLINE", "1") == "1":
    intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "show_memory": False,
}

nitpicky = False
