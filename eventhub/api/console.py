"""The operator console (SPEC §7): ``GET /console``, a single page, and ``GET
/console/{name}``, its scripts and styles, all shipped in this package
(``api/static/console``): plain ES modules and CSS, committed as written, so there is no
build step and nothing is fetched from elsewhere (the machine may be offline).

The page itself holds no data and needs no key: it signs in with an API key kept in the
tab's ``sessionStorage`` and then calls the documented API, as a script would (``GET
/api/me`` says what the key may do, so the page hides the rest). Its policy allows only this
origin, no inline script or style, and (Trusted Types) no HTML built from strings: the
scripts build the page with DOM calls, so an event's data can never become markup."""

from __future__ import annotations

from eventhub.api.operation import PUBLIC, Content, Operation
from eventhub.api.static_files import StaticFiles

POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files: revalidated each load, so an upgraded hub never runs yesterday's script.
    "Cache-Control": "no-cache",
}


# The console's files beside its page.
FILES = {
    "console.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "subscriptions.js": "text/javascript; charset=utf-8",
    "log.js": "text/javascript; charset=utf-8",
    "catalogue.js": "text/javascript; charset=utf-8",
    "processes.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


_CONSOLE = StaticFiles("console", "/console", FILES, HEADERS)
OPERATIONS = (
    Operation(
        "GET",
        "/console",
        _CONSOLE.page,
        "The operator console, a page (it signs in with an API key)",
        PUBLIC,
        {200: Content("text/html", {"type": "string"})},
        name="page",
        tag="console",
    ),
    Operation(
        "GET",
        "/console/{name}",
        _CONSOLE.asset,
        "A file of the console: its scripts and styles, from this package",
        PUBLIC,
        {
            200: (
                Content("text/javascript", {"type": "string"}),
                Content("text/css", {"type": "string"}),
                Content("image/svg+xml", {"type": "string"}),
            )
        },
        name="asset",
        tag="console",
    ),
)
