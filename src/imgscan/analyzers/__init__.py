"""Analyzer plugins, the registry that finds them, the walk that feeds them, and the merge."""
