"""Model runtimes: each takes named input arrays and returns named output arrays."""
