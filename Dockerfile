# syntax=docker/dockerfile:1
# Slim, non-root, reproducible: the base pinned by digest (a tag can be re-pointed; Dependabot
# proposes new digests, .github/dependabot.yml), dependencies pinned by constraints.txt, no
# build tools in the final image, no cache, no bytecode written at runtime (read-only root).
# The image holds the operator only: devtools/ (local cluster, Nacos builder) is not copied.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator ./operator
RUN python -m venv /opt/apprelease \
 && /opt/apprelease/bin/pip install --constraint constraints.txt . \
 && /opt/apprelease/bin/python -m compileall -q /opt/apprelease

FROM ${BASE}
ENV PATH=/opt/apprelease/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/apprelease /opt/apprelease
RUN groupadd --gid 10001 apprelease && useradd --uid 10001 --gid 10001 --no-create-home apprelease
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["apprelease"]
CMD ["run"]
