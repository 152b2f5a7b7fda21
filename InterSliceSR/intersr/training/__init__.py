"""Offline training of the shipped weights (`intersr train`); never imported at run time."""
