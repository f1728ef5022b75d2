"""Run the whole storylib notebook suite: ``python run_all.py --help``."""

import sys

from storylib.runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
