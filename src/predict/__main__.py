"""`python -m predict ...`."""

import sys

from predict.cli import main

sys.exit(main())
