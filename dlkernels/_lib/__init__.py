"""Shared internals: Python helpers every facade uses, and Cython declarations (.pxd)."""
