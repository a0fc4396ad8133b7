"""Trade sources and streaming stages."""
