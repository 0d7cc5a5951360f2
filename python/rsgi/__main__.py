"""``python -m rsgi`` is the same as the ``rsgi`` command."""

from rsgi.cli import main

if __name__ == "__main__":
    main()
