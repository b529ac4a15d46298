"""Staff accounts, passwords, MFA and tokens."""
