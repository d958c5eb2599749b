"""Benchmarks: what users feel, measured side by side with a reference in one run, reported as ratios."""
