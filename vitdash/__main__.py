import sys

from vitdash.cli import main

sys.exit(main())
