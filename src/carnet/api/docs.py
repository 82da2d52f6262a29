"""The API's own description, for developers only: ``/openapi.json`` and a plain ``/docs`` page.

Both are off unless ``CARNET_API_DOCS=on`` in development mode (production refuses the setting):
the schema maps every route of the server, which a public deployment has no reason to publish.
FastAPI's Swagger UI and ReDoc load scripts from a CDN; ``/docs`` here is a page of plain HTML
rendered from the schema, with no script and no request to any other origin, under a
Content-Security-Policy that forbids both.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

#: No script, no frame, nothing fetched from anywhere: the page is text.
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_METHODS = ("get", "post", "put", "patch", "delete")


def render_docs(schema: dict[str, Any]) -> str:
    """Render the OpenAPI ``schema`` as one HTML page: each path with its methods and summaries."""
    rows = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                summary = str(operation.get("summary") or operation.get("description") or "")
                rows.append(
                    f"<tr><td><code>{method.upper()}</code></td><td><code>{escape(path)}</code></td>"
                    f"<td>{escape(summary)}</td></tr>"
                )
    info = schema.get("info", {})
    title = escape(str(info.get("title", "API")))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em .8em;vertical-align:top}</style>"
        f"</head><body><h1>{title}</h1><p>{escape(str(info.get('description', '')))}</p>"
        '<p>The machine-readable schema: <a href="/openapi.json">/openapi.json</a>. '
        'The FHIR capabilities: <a href="/fhir/metadata">/fhir/metadata</a>.</p>'
        "<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>"
    )


def mount_docs(app: FastAPI) -> None:
    """Serve ``/docs``: the schema as plain HTML, without any third-party script."""

    @app.get("/docs", include_in_schema=False)
    async def _docs(request: Request) -> HTMLResponse:
        return HTMLResponse(render_docs(request.app.openapi()), headers={"Content-Security-Policy": DOCS_CSP})
