"""Rosters: students, guardians and teachers, imported from CSV, identities encrypted at rest."""
