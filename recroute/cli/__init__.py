"""The ``recroute`` command line."""
