import sys

from eventhub.cli import main

sys.exit(main())
