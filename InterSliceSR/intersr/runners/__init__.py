"""Runners: the single-volume pipeline, the progress protocol, memory planning, results."""
