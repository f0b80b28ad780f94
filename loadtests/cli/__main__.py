"""``python -m loadtests.cli``: the servecap command line."""

from loadtests.cli import main

main()
