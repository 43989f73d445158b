"""Infrastructure every layer uses: errors, atomic file writes, shared constants, the package's paths."""
