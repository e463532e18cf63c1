"""Sphinx configuration for the dlkernels documentation.

The docs describe the *installed* package: autodoc imports ``dlkernels`` from
site-packages (``pip install '.[docs]'`` or ``make docs``), never from this
checkout, whose compiled modules are not built in place.
"""

from __future__ import annotations

from pathlib import Path

import dlkernels
from sphinx.errors import ConfigError

_checkout = Path(__file__).resolve().parent.parent
if Path(dlkernels.__file__).resolve().is_relative_to(_checkout / "dlkernels"):
    raise ConfigError(
        f"dlkernels was imported from the source tree ({dlkernels.__file__}); the docs "
        "document the installed package. Install it first (pip install '.[docs]') "
        "and run sphinx-build from an environment where the checkout is not on sys.path."
    )

# -- Project -------------------------------------------------------------------
project = "dlkernels"
author = "dlkernels developers"
copyright = "dlkernels developers"
release = dlkernels.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "obj"
pygments_style = "sphinx"

# -- autodoc / autosummary -------------------------------------------------------
# Stub pages are written to docs/api/generated/ (git-ignored) by the autosummary
# directives in api.rst. Our class template (_templates/autosummary/class.rst)
# documents each public method and property once, with :members:.
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = False
autodoc_typehints = "none"          # the numpydoc sections carry the types
autodoc_member_order = "groupwise"
autodoc_inherit_docstrings = False
autoclass_content = "class"

# -- numpydoc --------------------------------------------------------------------
# numpydoc's own member tables would list every method a second time next to
# autosummary's (the classic "duplicate object description" clash): turn them off
# and let the class template do it.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_use_plots = False

# -- HTML ------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"dlkernels {release}"
html_theme_options = {
    "description": "Fast, exact, tested kernels for deep-learning pipelines",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_sidebars = {
    "**": ["about.html", "navigation.html", "relations.html", "searchbox.html"],
}
html_show_sourcelink = False
# No html_static_path: there are no local static files, and a missing folder warns.
