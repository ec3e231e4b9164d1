"""A worker module that ends the interpreter when imported: the pipeline must refuse it, not exit."""

import sys

sys.exit(3)
