"""``python -m ptlib``: the command line (see ``ptlib.cli``)."""

from ptlib.cli import main

raise SystemExit(main())
