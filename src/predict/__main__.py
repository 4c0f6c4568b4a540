"""`python -m predict ...`."""

import sys

from predict.cli import entry_point

sys.exit(entry_point())
