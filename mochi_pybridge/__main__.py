"""``python -m mochi_pybridge``: the same entry point as the ``mochi-pybridge`` script."""

from mochi_pybridge.kernel.cli import main

raise SystemExit(main())
