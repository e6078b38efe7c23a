"""``python -m experiments.data prepare DATASET... --root DIR [--from FILE]`` (see :mod:`experiments.data.prepare`)."""

import sys

from experiments.data.prepare import main

sys.exit(main())
