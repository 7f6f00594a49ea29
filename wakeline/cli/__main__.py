"""``python -m wakeline.cli``: the same as the ``wakeline`` command."""

from wakeline.cli.main import main

main()
