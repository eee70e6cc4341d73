"""`python -m icbridge ...`: see icbridge.cli."""

from icbridge.cli import main

raise SystemExit(main())
