"""``python -m imgscan`` runs the command-line interface (``mount``/``umount`` on a fast
path, see ``imgscan.cli_fast``)."""

from imgscan.cli_fast import main

main()
