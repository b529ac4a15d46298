"""dp_queries package."""
