"""The documentation pages under /schema, whose scripts and styles the API serves itself.

Redoc (at /schema and /schema/redoc) and Swagger UI (/schema/swagger) are their release
builds, kept in api/schema-assets (its README says which versions, from where, under which
licences): the pages render with no network access and the same on every install, where
Litestar's defaults load an unpinned build from a CDN, and web fonts. A
Content-Security-Policy keeps the pages to this server: Redoc's build would otherwise fetch
its maker's logo from a CDN.
"""

from collections.abc import Mapping
from pathlib import Path

from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Example
from litestar.router import Router
from litestar.static_files import create_static_files_router

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
# No icon to fetch: Litestar's default points at a CDN.
NO_FAVICON = "<link rel='icon' href='data:,'>"
# Everything from this server. The pages' own start-up scripts and the styles their scripts
# write are inline; Redoc's search runs in a worker made from a blob; Swagger UI draws icons
# from data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


# Redoc's and Swagger UI's files, one directory each.
ASSETS_DIRECTORY = Path(__file__).resolve().parent / "schema-assets"


def assets_router() -> Router:
    """Serves the Redoc and Swagger UI files under /schema/assets, outside the schema."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[ASSETS_DIRECTORY], include_in_schema=False
    )


def openapi_config(version: str) -> OpenAPIConfig:
    """The OpenAPI schema at /schema/openapi.json and its pages, all from this server."""
    swagger = f"{ASSETS_PATH}/swagger-ui"
    return OpenAPIConfig(
        title="datatracker",
        version=version,
        description="Crypto prices collected every minute, served from TimescaleDB.",
        openapi_router=Router(
            path=SCHEMA_PATH,
            route_handlers=[],
            include_in_schema=False,
            response_headers=[
                ResponseHeader(name="Content-Security-Policy", value=CONTENT_SECURITY_POLICY)
            ],
        ),
        render_plugins=[
            RedocRenderPlugin(
                path=["/", "/redoc"],
                js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js",
                google_fonts=False,
                favicon=NO_FAVICON,
            ),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{swagger}/swagger-ui-bundle.js",
                css_url=f"{swagger}/swagger-ui.css",
                standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
                favicon=NO_FAVICON,
            ),
            JsonRenderPlugin(),
        ],
    )


# Examples shown on the pages: a real pair, plausible prices, ISO times.
PRICE_EXAMPLE = {
    "exchange": "kraken",
    "symbol": "btcusd",
    "price": 97399.46,
    "updated_at": "2026-11-25T03:07:00Z",
}
PRICE_HISTORY_EXAMPLE = {
    "exchange": "kraken",
    "symbol": "btcusd",
    "prices": [
        PRICE_EXAMPLE,
        PRICE_EXAMPLE | {"price": 97480.23, "updated_at": "2026-11-25T03:08:00Z"},
        PRICE_EXAMPLE | {"price": 97455.1, "updated_at": "2026-11-25T03:09:00Z"},
    ],
    "stdv": 41.02,
    "rank": 212,
    "ranked": 250,
}
RANKINGS_EXAMPLE = {
    "by": "cv",
    "exchange": "kraken",
    "ranked": 50,
    "limit": 1,
    "offset": 0,
    "rankings": [
        {
            "exchange": "kraken",
            "symbol": "solusd",
            "rank": 3,
            "stdv": 4.12,
            "cv": 0.0218,
            "mean": 189.4,
            "min": 181.2,
            "max": 197.9,
            "first": 183.0,
            "last": 195.6,
            "change_pct": 6.89,
            "count": 1440,
        }
    ],
    "as_of": "2026-11-25T03:09:00Z",
}
CANDLES_EXAMPLE = {
    "exchange": "kraken",
    "symbol": "btcusd",
    "interval": "1h",
    "start": "2026-11-25T01:00:00Z",
    "end": "2026-11-25T03:00:00Z",
    "candles": [
        {
            "time": "2026-11-25T01:00:00Z",
            "open": 97012.5,
            "high": 97533.0,
            "low": 96870.2,
            "close": 97399.46,
            "count": 60,
            "mean": 97210.8,
            "stdv": 151.3,
        },
        {
            "time": "2026-11-25T02:00:00Z",
            "open": 97401.0,
            "high": 97620.4,
            "low": 97288.9,
            "close": 97480.23,
            "count": 60,
            "mean": 97455.1,
            "stdv": 88.6,
        },
    ],
}
NOT_FOUND_EXAMPLE = {"status_code": 404, "detail": "unknown pair 'dogeusd' on exchange 'kraken'"}


def documented(model: type, description: str, example: Mapping[str, object]) -> ResponseSpec:
    """A response of `model` shown with `example`, instead of one Litestar makes up."""
    return ResponseSpec(
        model, description=description, generate_examples=False, examples=[Example(value=example)]
    )
