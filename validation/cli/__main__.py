"""``python -m validation.cli``: the same as the ``dsa-validate`` console script."""

import sys

from validation.cli.entry import main

sys.exit(main())
