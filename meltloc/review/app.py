"""The web app of ``meltloc review`` (FastAPI): JSON for the page, image tiles, decisions, export.

Routes::

    GET  /                              the page (static, shipped in the package)
    GET  /static/...                    its script and style
    GET  /api/sections                  the list: depth range and counts per section
    GET  /api/sections/{image}          one section: tiles' layout, depth scale, detections, hand log, truth
    GET  /api/tiles/{image}/{z}/{i}.jpg one tile (made on first use, cached on disk)
    POST /api/decisions/{id}            decide on a row: status, boundaries, type, note
    POST /api/decisions                 add a feature drawn by hand
    GET  /api/export.csv | .xlsx        the reviewed melt log as a download
    GET  /api/version                   changes by other tabs or servers

A request names sections by image name, never by path; every file served is
checked against the image folders (:meth:`ReviewSession.image_path`). Bad
requests get a 4xx JSON answer, and an unexpected fault a 500 without a
traceback. Only the hosts the server was started for are answered (a web
page elsewhere cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Literal, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from meltloc.errors import MeltlocError
from meltloc.review.session import NotFound, ReviewSession
from meltloc.review.store import NOTE_MAX, DecisionError, ReviewError

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("meltloc.review")

Status = Literal["unreviewed", "accepted", "rejected", "edited", "added"]
Kind = Literal["melt_layer", "melt_lens"]


class DecisionIn(BaseModel):
    """A decision on one row; absent fields are left as they are."""

    model_config = ConfigDict(extra="forbid")
    status: Optional[Status] = None
    depth_from_m: Optional[float] = Field(None, ge=0, le=10000, allow_inf_nan=False)
    depth_to_m: Optional[float] = Field(None, ge=0, le=10000, allow_inf_nan=False)
    type: Optional[Kind] = None
    note: Optional[str] = Field(None, max_length=NOTE_MAX)


class AddIn(BaseModel):
    """A feature drawn by hand."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., min_length=1, max_length=500)
    depth_from_m: float = Field(..., ge=0, le=10000, allow_inf_nan=False)
    depth_to_m: float = Field(..., ge=0, le=10000, allow_inf_nan=False)
    type: Kind = "melt_layer"
    note: str = Field("", max_length=NOTE_MAX)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def create_app(session: ReviewSession, allowed_hosts: list[str] | None = None, prefetch: bool = True) -> FastAPI:
    """The app serving one review session.

    Args:
        session: the review.
        allowed_hosts: Host headers answered (default 127.0.0.1 and localhost).
        prefetch: make the next section's tiles in the background when one is opened.
    """
    app = FastAPI(title="meltloc review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return _error(404, exc.message)

    @app.exception_handler(MeltlocError)
    async def _bad(request: Request, exc: MeltlocError):
        return _error(409 if not isinstance(exc, DecisionError) and isinstance(exc, ReviewError) else 400,
                      " ".join(str(exc.message).split()))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception):  # pragma: no cover - a bug, logged, never shown
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal error (see the server's terminal)")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/sections")
    def sections():
        return session.listing()

    @app.get("/api/sections/{image}")
    def section(image: str):
        detail = session.detail(image)
        if prefetch:
            session.prefetch(image)
        return detail

    @app.get("/api/tiles/{image}/{z}/{i}.jpg")
    def tile(image: str, z: int, i: int):
        path = session.image_path(image)  # checked against the image folders
        meta = session.tiles.cached(path)
        if meta is None:
            session.prepare(image)
        f = session.tiles.tile(path, z, i)
        if f is None:
            raise NotFound(f"no tile {z}/{i} of section '{image}'")
        return FileResponse(f, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.post("/api/decisions/{index}")
    def decide(index: int, body: DecisionIn):
        return session.decide(index, **body.model_dump(exclude_none=True))

    @app.post("/api/decisions")
    def add(body: AddIn):
        return session.add(body.image, body.depth_from_m, body.depth_to_m, body.type, body.note)

    @app.get("/api/export.{fmt}")
    def export(fmt: str):
        if fmt not in ("csv", "xlsx"):
            raise NotFound(f"no export as '{fmt}': use export.csv or export.xlsx")
        name = Path(session.store.detections).stem + f".log.{fmt}"
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / name
            session.export(target)
            data = target.read_bytes()
        media = "text/csv" if fmt == "csv" else \
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/version")
    def version():
        return {"version": session.store.reload()}

    return app
