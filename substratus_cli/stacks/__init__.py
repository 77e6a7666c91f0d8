"""Stacks and workspace variables: rendering happens before validation, so every resource a stack
renders is checked, planned and reported like one written by hand, at its template's file:line."""

from __future__ import annotations

from substratus_cli.stacks.instances import (
    CONFIG_KINDS,
    Expansion,
    Instance,
    OutputValue,
    RenderedText,
    Source,
    expand,
)
from substratus_cli.stacks.variables import VariableInput

__all__ = ["CONFIG_KINDS", "Expansion", "Instance", "OutputValue", "RenderedText", "Source", "VariableInput",
           "expand"]
