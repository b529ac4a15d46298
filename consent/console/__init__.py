"""The data steward's console: roster imports, invitation campaigns, letters and the dashboard."""
