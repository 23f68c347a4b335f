"""``python -m modelprof``."""

from .cli import main

main()
