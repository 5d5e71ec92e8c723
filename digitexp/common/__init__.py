"""Small building blocks every layer shares: atomic file writes, progress display, figures."""
