"""Research projects and their approval: the "safe projects" of the Five Safes."""
