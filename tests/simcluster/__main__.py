"""`python -m tests.simcluster` (from the repository root): the cluster demo, see demo.py."""

import sys

from .demo import main

sys.exit(main())
