"""Run the ``carnet`` command as ``python -m carnet``."""

from carnet.cli import main

main()
