"""A module with no @workflow in it, for `riverrun worker` error tests."""

VALUE = 42


async def not_a_workflow() -> None:
    return None
