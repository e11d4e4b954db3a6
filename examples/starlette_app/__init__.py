"""A multi-plugin Starlette host using cachekit: run ``python -m examples.starlette_app``."""
