"""Adapters for agent harnesses that need code (each imports its harness lazily: only when used)."""
