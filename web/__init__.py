"""Browser pages: templates, static ES modules and CSS, page handlers."""
