"""Coverage-guided fuzzing of protocol/ with atheris (libFuzzer); target in fuzz_harness_core.

    .venv/bin/python fuzz/fuzz_protocol.py fuzz/corpus fuzz/seeds -max_total_time=600 \
        -rss_limit_mb=512 -print_final_stats=1

``fuzz/corpus`` (git-ignored) accumulates inputs; ``fuzz/seeds`` holds the golden frames.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz_harness_core import test_one_input


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
