"""The web console: a small static bundle the admin API serves at ``/ui``.

One HTML page, one JavaScript module and one style sheet, hand-written, no framework and no build
step (``static/``, shipped as package data). The files are public, like ``/health``: they hold no
data. The page asks for a bearer token once, keeps it in the tab's ``sessionStorage`` and calls
the JSON API with it, so what a user sees and may do is exactly what the API lets that token see
and do (:mod:`hostspec.control.access`). The browser's security headers of these answers (a
Content-Security-Policy without inline scripts, ``nosniff``) are set by :class:`~hostspec.control.access.Access`.

Routes::

    GET /ui                the page (index.html)
    GET /ui/               redirected to /ui
    GET /ui/static/{file}  the page's script, styles and images (only the files of static/)
"""
from __future__ import annotations

from pathlib import Path

import falcon

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".txt": "text/plain; charset=utf-8"}


def _files(folder: Path) -> dict[str, Path]:
    """The files served: those of ``folder`` with a known type (nothing else, no sub-folder)."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in TYPES}


class _Asset:
    """One file's bytes, read once (the bundle is small and changes only with the package)."""

    def __init__(self, path: Path):
        self.data, self.content_type = path.read_bytes(), TYPES[path.suffix]

    def answer(self, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self.data, self.content_type
        resp.cache_control = ["no-cache"]          # revalidated: a new version shows at once


class Page:
    def __init__(self, folder: Path = STATIC):
        self.page = _Asset(folder / "index.html")

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        self.page.answer(resp)


class Slash:
    def on_get(self, _req: falcon.Request, _resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently(PREFIX)


class Static:
    def __init__(self, folder: Path = STATIC):
        self.assets = {name: _Asset(path) for name, path in _files(folder).items() if name != "index.html"}

    def on_get(self, _req: falcon.Request, resp: falcon.Response, file: str) -> None:
        asset = self.assets.get(file)
        if asset is None:
            raise falcon.HTTPNotFound(title=f"no console file {file!r}")
        asset.answer(resp)


def add_routes(app: falcon.App, folder: Path = STATIC) -> None:
    """``/ui``, ``/ui/`` and ``/ui/static/{file}`` on ``app``."""
    app.add_route(PREFIX, Page(folder))
    app.add_route(PREFIX + "/", Slash())
    app.add_route(PREFIX + "/static/{file}", Static(folder))


def public(path: str) -> bool:
    """Whether ``path`` is the console's (served without a token)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


__all__ = ["PREFIX", "STATIC", "add_routes", "public"]
