"""A page and its files, shipped in this package (``api/static/<folder>``): ``/docs`` and
``/console`` serve theirs this way. Only the files named are served (no path from the request
reaches the file system), each read once and kept, with the headers the page's policy needs."""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors


class StaticFiles:
    """``index.html`` as the page, and the named ``files`` (name → media type) beside it."""

    def __init__(
        self, folder: str, route: str, files: Mapping[str, str], headers: Mapping[str, str]
    ) -> None:
        self._static = importlib.resources.files("eventhub.api") / "static" / folder
        self._route = route
        self.files = dict(files)
        self._headers = dict(headers)
        self._cache: dict[str, bytes] = {}

    async def page(self, request: Request) -> Response:
        return self._file("index.html", "text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = self.files.get(name)
        if media_type is None:
            raise errors.NotFound(f"no file {name!r}: {self._route} serves {', '.join(self.files)}")
        return self._file(name, media_type)

    def _file(self, name: str, media_type: str) -> Response:
        content = self._cache.get(name)
        if content is None:
            content = self._cache[name] = (self._static / name).read_bytes()
        return Response(content, headers=self._headers, media_type=media_type)
