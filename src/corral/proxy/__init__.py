"""Egress proxy: the sandbox's only way out."""
