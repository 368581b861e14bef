"""A module naming its workflows in a list, for `riverrun worker MODULE:ATTR`."""

from tests.cli.workflows import countdown, greeter

WORKFLOWS = [greeter, countdown]
