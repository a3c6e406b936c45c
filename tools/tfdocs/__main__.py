"""python -m tfdocs: see tfdocs.cli."""

from tfdocs.cli import main

raise SystemExit(main())
