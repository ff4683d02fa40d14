"""Allow ``python -m apncli`` to behave exactly like the ``apn`` console script."""

from apncli.cli.app import main

if __name__ == "__main__":
    main()
