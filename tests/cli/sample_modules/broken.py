"""A module that fails on import, for `riverrun worker` error tests."""

raise RuntimeError("this module is broken on purpose")
