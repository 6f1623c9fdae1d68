"""Run meltloc without installing the console script: ``python cli.py ...``."""

from meltloc.__main__ import main

if __name__ == "__main__":
    main()
