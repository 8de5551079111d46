"""``python -m alwa_det`` is the same command line as ``alwa-train``."""
import sys

from .cli import main

sys.exit(main())
