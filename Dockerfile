# One image for the collector and the API; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY datatracker ./datatracker
COPY collector ./collector
COPY api ./api
COPY db ./db
# The README's install command, without the development extras.
RUN pip install -c constraints.txt -e .

RUN useradd --system --no-create-home tracker
# The collector's spool (docker-compose.yml mounts a named volume here): a new volume takes
# this directory's owner, so tracker can write it.
RUN mkdir -p /var/lib/datatracker/spool && chown tracker /var/lib/datatracker/spool
USER tracker

CMD ["python", "-m", "api"]
