"""riverrun.actors."""
