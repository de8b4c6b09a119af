"""``python -m imgscan`` runs the command-line interface."""

from imgscan.cli import main

main()
