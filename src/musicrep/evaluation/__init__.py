"""Downstream evaluation: the task registry (tasks.py), its data, the embedding file format, probes, continuation, the report and the explorer page."""
