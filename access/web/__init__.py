"""Server-rendered pages for staff: sign-in and the audit review console."""
