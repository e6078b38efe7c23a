"""Experiment entry points: single runs now; sweeps, aggregation and plots as the paper work lands."""
