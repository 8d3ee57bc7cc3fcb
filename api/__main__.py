"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT."""

import uvicorn

from api.app import create_app
from api.server import allow_open_files, server_options
from datatracker.logs import configure_logging
from datatracker.settings import load_settings


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    max_connections = allow_open_files(settings.api_max_connections)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=True,
        **server_options(settings, max_connections),
    )


if __name__ == "__main__":
    main()
