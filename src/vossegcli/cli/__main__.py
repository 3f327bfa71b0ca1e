"""``python -m vossegcli.cli``: the vosseg command line."""

from vossegcli.cli import main

main()
