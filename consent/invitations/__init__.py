"""Invitations: single-use, expiring links and short codes for guardians, students and teachers."""
