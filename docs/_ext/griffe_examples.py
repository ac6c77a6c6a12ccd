"""Griffe extension for the API pages: a Google-style ``Example:`` section is an examples
section (its ``>>>`` lines rendered as code), as ``Examples:`` is.

Griffe reads the singular title as an admonition, whose ``>>>`` lines would be rendered as
Markdown text; the package's docstrings use the singular (Google's style guide allows both).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` to ``Examples:`` in every docstring before it is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
