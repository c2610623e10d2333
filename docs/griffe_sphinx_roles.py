"""A Griffe extension for the API reference: the docstrings' Sphinx roles as links.

The docstrings are plain prose with reStructuredText roles (``:class:`Result```,
``:meth:`~.base.Method.cam```, ``:mod:`.maps```). Markdown would show the role's name as text;
this extension rewrites each role, once the whole package is loaded, the way Sphinx titles it
(``~`` keeps the last component, leading dots are dropped, ``title <target>`` keeps the title) and
links it when the target is an object of the package: an *optional* cross-reference of
mkdocs-autorefs, which links where the object is rendered and stays plain code where it is not
(so no warning for the many private objects the reference does not show). The source is not
changed. mkdocs.yml loads it (``extensions``, under the python handler's options).
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Module, Object

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj):`(?P<body>[^`]+)`")
EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", flags=re.DOTALL)


def _title(target: str) -> str:
    """What Sphinx shows for a role with no explicit title."""
    title = target.lstrip(".")
    if title.startswith("~"):
        title = title[1:].lstrip(".").rsplit(".", 1)[-1]
    return title


def _paths(obj: Object, into: set[str]) -> None:
    """Every object's path under ``obj`` (aliases: their own paths, not followed)."""
    into.add(obj.path)
    if obj.is_alias or not (obj.is_module or obj.is_class):
        return
    for member in obj.members.values():
        _paths(member, into)


def _resolve(target: str, obj: Object, paths: set[str]) -> str | None:
    """The full path ``target`` names from ``obj``'s docstring, or None."""
    name = target.lstrip("~").lstrip(".")
    if not name:
        return None
    scope: Object | None = obj
    while scope is not None:  # the object's own members first, then its parents'
        if f"{scope.path}.{name}" in paths:
            return f"{scope.path}.{name}"
        scope = scope.parent
    if name in paths:
        return name
    ends = [path for path in paths if path.endswith(f".{name}")]
    if not ends:
        return None

    def shared(path: str) -> int:  # the candidate nearest the docstring's object
        common = 0
        for a, b in zip(path.split("."), obj.path.split("."), strict=False):
            if a != b:
                break
            common += 1
        return common

    return max(sorted(ends), key=lambda path: (shared(path), -path.count(".")))


class SphinxRoles(Extension):
    """Rewrite ``:role:`target``` in every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        paths: set[str] = set()
        _paths(pkg, paths)
        self._rewrite(pkg, paths)

    def _rewrite(self, obj: Object, paths: set[str]) -> None:
        if obj.is_alias:
            return
        if obj.docstring is not None:

            def replace(match: re.Match[str]) -> str:
                body = " ".join(match["body"].split())
                explicit = EXPLICIT.match(body)
                target = explicit["target"] if explicit else body
                title = explicit["title"] if explicit else _title(target)
                path = _resolve(target, obj, paths)
                if path is None:
                    return f"`{title}`"
                return (
                    f'<autoref identifier="{html.escape(path)}" optional>'
                    f"<code>{html.escape(title)}</code></autoref>"
                )

            obj.docstring.value = ROLE.sub(replace, obj.docstring.value)
        if obj.is_module or obj.is_class:
            for member in obj.members.values():
                self._rewrite(member, paths)
