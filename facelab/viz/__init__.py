"""Figures of results: functions take result arrays and return a matplotlib Figure."""
