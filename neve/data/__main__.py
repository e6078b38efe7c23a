"""``python -m neve.data prepare DATASET... --root DIR [--from FILE]`` (see :mod:`neve.data.prepare`)."""

import sys

from neve.data.prepare import main

sys.exit(main())
