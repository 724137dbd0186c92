"""Workspace facts: scanning writable areas for protected files, expanding globs."""
