"""``python -m learning_demo``: the ``learning-demo`` command."""
from learning_demo.cli import main

raise SystemExit(main())
