"""Sphinx configuration for the dlkernels documentation.

The docs describe the *installed* package: autodoc imports ``dlkernels`` from
site-packages (``pip install '.[docs]'`` or ``make docs``), never from this
checkout, whose compiled modules are not built in place.
"""

from __future__ import annotations

import importlib.util
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
# The theme of numpy, scipy and pandas: wide code blocks, the same navigation.
html_theme = "pydata_sphinx_theme"
html_title = f"dlkernels {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_static_path: list[str] = []

# -- Math, offline ---------------------------------------------------------------
# MathJax 3 from the django-static-mathjax package (a plain copy of MathJax's files,
# with no Django dependency; in the docs extra), served from the docs' own _static
# instead of a CDN. The SVG output needs no font files, and the "full" build holds
# every TeX extension, so this one file is all the pages load.
def _mathjax_file() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError('the docs render math offline with MathJax from the '
                          '"django-static-mathjax" package: pip install ".[docs]"')
    path = Path(list(spec.submodule_search_locations)[0]) / "static/mathjax/es5/tex-svg-full.js"
    if not path.is_file():
        raise ConfigError(f"MathJax's tex-svg-full.js is not at {path}")
    return path


_mathjax = _mathjax_file()
html_static_path.append(str(_mathjax))
mathjax_path = _mathjax.name  # relative to the built _static folder
