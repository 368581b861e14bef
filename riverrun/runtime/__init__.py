"""riverrun.runtime."""
