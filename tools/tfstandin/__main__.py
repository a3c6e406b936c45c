"""python -m tfstandin: see tfstandin.cli."""

from tfstandin.cli import main

raise SystemExit(main())
