#!/usr/bin/env python3
"""The single source of dlkernels's version: read by meson.build and by the package."""

__version__ = "0.1.0"

if __name__ == "__main__":
    print(__version__)
