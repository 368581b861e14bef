"""``python -m riverrun``: the same as the ``riverrun`` command."""

from riverrun.cli import main

if __name__ == "__main__":
    main()
