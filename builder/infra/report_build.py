"""The parts of the ``build`` section of report.json that stand alone (the builder, its cache, the
image's time, the layers), and :class:`Record`, the base of every value tfimg writes in report.json.
:mod:`builder.infra.report_models` re-exports them; import them from there."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """A value inside a section, written by tfimg: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LayerSize(Record):
    created_by: str
    size: int


class BuilderInfo(Record):
    kind: str = Field(description="buildx, or a classic client with DOCKER_BUILDKIT=1.")
    docker: str = Field(description="The docker client used.")
    version: str
    name: str | None = Field(None, description="The named buildx builder (`--builder`), if one was chosen.")
    driver: str | None = Field(None, description="buildx's driver: docker, docker-container, remote, kubernetes.")
    store: str | None = Field(None, description="docker driver: the engine's image store, classic or containerd.")
    buildkit: str | None = Field(None, description="BuildKit's version (major.minor), when known.")


class BuildCache(Record):
    """The registry build cache a build used (``--cache-from`` / ``--cache-to``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    mode: Literal["inline", "registry"] = Field(description="inline: BUILDKIT_INLINE_CACHE in the image "
                                                "(docker 20.10 client); registry: buildx type=registry, mode=max.")
    from_: list[str] = Field(alias="from", description="References the build imported cache from.")
    to: str | None = Field(None, description="Reference the cache was exported to.")
    pushed: str | None = Field(None, description="inline mode: REF@DIGEST of the image pushed as the cache.")
    cached_steps: int | None = Field(None, description="Build steps taken from a cache (#N CACHED in build.log).")


class SourceDateInfo(Record):
    """The image's time (SOURCE_DATE_EPOCH) and where it came from."""

    epoch: int = Field(description="Unix seconds: the image's created time, its label and its history.")
    source: Literal["spec", "env", "git", "now", "recorded"] = Field(
        description="spec: build.source_date_epoch; env: $SOURCE_DATE_EPOCH; git: the variant's last commit; now: "
                    "none of those (not reproducible); recorded: the published image's (`build --reproduce`).")
