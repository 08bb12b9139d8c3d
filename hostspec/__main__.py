import sys

from hostspec.cli.main import main

sys.exit(main())
