"""``python -m icbridge.demo``: the demo, a development tool: it runs the simulators (:mod:`icbsim`,
in the repository's include/, not in the icbridge package). See :mod:`icbsim.demo`.

    python -m icbridge.demo [--home .demo] [--exit] [--state-db-url URL] [--timeout 300]

Kept so that scripts/demo.sh and the README's commands stay as they were; icbsim is imported
only when the demo runs, so importing this module needs no simulator.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`icbsim.demo.main` (needs the repository's include/ on sys.path: scripts/setup.sh)."""
    from icbsim.demo import main as demo_main

    return demo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
