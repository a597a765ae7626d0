"""`python -m xtoken_align.cli`: the command without the web layer's `serve`."""

import sys

from xtoken_align.cli import main

sys.exit(main())
