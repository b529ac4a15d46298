"""The family pages: what guardians, students and teachers see after opening their link or code."""
