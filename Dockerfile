# The flights-app image: worker, dashboard and fake OpenSky server (docker-compose.yml picks the command).
#   docker build -t flights-app .
#   docker run --rm -e FLIGHTS_BROKER=kafka://broker:9092 flights-app                  # the worker
#   docker run --rm -p 127.0.0.1:5006:5006 -e FLIGHTS_WEB_BIND=0.0.0.0 ... flights-app flights-app dashboard

# The dashboard's offline land outline (Natural Earth 1:110m, npm package world-atlas), as `make install` gets it.
FROM node:20-slim AS maps
WORKDIR /maps
RUN npm pack world-atlas@2.0.2 --silent \
 && tar -xzf world-atlas-2.0.2.tgz package/land-110m.json \
 && mv package/land-110m.json land-110m.json

# A wheel of the app (its package data: the default model and its manifest).
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY flights_app ./flights_app
COPY agents ./agents
COPY tables ./tables
COPY ml ./ml
COPY web ./web
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 flights \
 && mkdir /data && chown flights:flights /data
COPY --from=build /wheels /wheels
# Dependencies as setup.cfg pins them (prebuilt wheels: no compiler in the image).
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --from=maps /maps/land-110m.json /usr/share/flights-app/land-110m.json
ENV FLIGHTS_DATADIR=/data \
    FLIGHTS_MAP_OUTLINE=/usr/share/flights-app/land-110m.json \
    PYTHONUNBUFFERED=1
USER flights
WORKDIR /home/flights
VOLUME ["/data"]
# 6066 worker web (health, tables, /metrics), 5006 dashboard, 8081 fake OpenSky
EXPOSE 6066 5006 8081
CMD ["flights-app", "worker"]
