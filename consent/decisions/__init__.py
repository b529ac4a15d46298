"""Consent decisions (append-only events), effective status, withdrawals and re-consent."""
