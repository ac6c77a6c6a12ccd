"""Griffe extension for the API pages: the package's docstrings read as Markdown.

- A Google-style ``Example:`` section is an examples section (its ``>>>`` lines rendered
  as code), as ``Examples:`` is. Griffe reads the singular title as an admonition, whose
  ``>>>`` lines would be rendered as Markdown text; the package's docstrings use the
  singular (Google's style guide allows both).
- Sphinx roles (``:class:`~ncp_search.NCPPruner```, ``:func:`...```, ``:mod:`...```)
  become code spans (``NCPPruner``, or the full path without ``~``): mkdocstrings renders
  Markdown, where the roles would show as raw text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class ExampleSections(griffe.Extension):
    """Rewrite every docstring as above before it is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_role, value)
