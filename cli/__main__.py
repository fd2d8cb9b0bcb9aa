import sys

from dislotrack.cli.main import main

sys.exit(main())
