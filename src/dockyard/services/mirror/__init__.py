"""Pull-through caches of upstream registries."""
