"""``python -m xsift.cli``: the ``xsift`` command."""
import sys

from xsift.cli import main

sys.exit(main())
