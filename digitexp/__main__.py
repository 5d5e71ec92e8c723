"""``python -m digitexp``."""

from digitexp.cli import main

raise SystemExit(main())
