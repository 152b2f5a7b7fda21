"""Benchmarks (`intersr bench`): quality against interpolation, speed, backends, real scans."""
