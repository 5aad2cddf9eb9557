"""mochi-pybridge: the sandboxed build pipeline of Mochi's bridge to Python (MEP-71).

The architecture folders live at the repository's top level and are linked in here:
``kernel`` (trio orchestrator), ``protocol`` (sans-IO msgpack frames), ``runners`` (one
program per stage kind) and ``sandbox`` (policies rendered to bubblewrap + seccomp).
"""

__version__ = "0.1.0"
