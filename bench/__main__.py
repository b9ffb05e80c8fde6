"""``python -m bench``: the benchmarks.

``python -m bench [BENCHMARK ...]``: every benchmark (or the named ones), one table (:mod:`bench.suite`).
``python -m bench soak [--full] [--seed N] [--workdir DIR] [--json]``: the soak (:mod:`bench.soak`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["soak"]:
        from bench import soak

        return soak.main(args[1:])
    from bench import suite

    return suite.main(args)


if __name__ == "__main__":
    sys.exit(main())
