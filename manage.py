#!/usr/bin/env python
"""Django's command-line utility for Rotator (the same as the installed `rotator` command)."""

from config.cli import main

if __name__ == "__main__":
    main()
