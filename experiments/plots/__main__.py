"""``python -m experiments.plots`` (see :mod:`experiments.plots.cli`)."""

import sys

from experiments.plots.cli import main

sys.exit(main())
