"""``python -m nodeops``: the ``nodeops`` command, for when its script is not on PATH (``serve --workers`` starts
its API processes this way)."""

from nodeops.cli.app import main

main()
