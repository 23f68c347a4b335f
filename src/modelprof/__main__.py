"""``python -m modelprof``."""

from modelprof.cli import main

main()
