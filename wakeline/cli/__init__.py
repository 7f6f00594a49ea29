"""The ``wakeline`` command line: a thin layer over the public client and worker."""

from wakeline.cli.main import main

__all__ = ["main"]
