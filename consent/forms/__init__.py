"""Purposes and versioned consent forms (Markdown files, immutable once published)."""
