import sys

from fastchat_lite.cli import main

sys.exit(main())
