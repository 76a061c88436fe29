"""Statistics over stored results; reads the store, never trains."""
