# First version (the production issue finishes it): slim Python, non-root, deps from setup.cfg.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 flights
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY flights_app ./flights_app
COPY agents ./agents
COPY tables ./tables
COPY ml ./ml
COPY web ./web
RUN pip install --no-cache-dir .
USER flights
ENV FLIGHTS_DATADIR=/data
CMD ["flights-app", "worker"]
