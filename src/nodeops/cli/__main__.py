"""``python -m nodeops.cli``: the ``nodeops`` command (``serve --workers`` starts its API processes this way)."""

from nodeops.cli.app import main

main()
