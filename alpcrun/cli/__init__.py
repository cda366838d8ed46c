"""The ``alpcrun`` command line."""
