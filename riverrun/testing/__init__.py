"""riverrun.testing."""
