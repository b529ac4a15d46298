"""Server-rendered web pages: the base layout, static files and language negotiation."""
