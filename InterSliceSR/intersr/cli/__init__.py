"""The command line: `intersr run | demo | info | bench | train`."""
