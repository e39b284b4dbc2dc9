import sys

from strum.cli import main

sys.exit(main())
