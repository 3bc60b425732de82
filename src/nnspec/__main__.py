"""``python -m nnspec`` runs the command line, as ``nnspec`` does."""

from .cli.main import main

if __name__ == "__main__":
    main()
