"""``python -m recroute``: the ``recroute`` command."""

from recroute.cli.main import main

if __name__ == "__main__":
    main()
