"""Fault tests of issue #9, one file per area, grouped by rule."""
