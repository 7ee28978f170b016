import sys

from spotkit.cli import main

sys.exit(main())
