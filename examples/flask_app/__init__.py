"""A multi-plugin Flask host using cachekit: run ``python -m examples.flask_app``."""
