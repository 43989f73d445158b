"""The FastAPI application: the page, the model list, and the restore endpoint.

Routes:

- ``GET /`` and ``/static/*``: the page (plain HTML, CSS and JavaScript, no build step);
- ``GET /api/info``: the models on offer (with engines, OPs, Params, file size) and the limits;
- ``POST /api/restore?task=&scale=&model=&engine=&degrade=&sigma=&quality=&filename=``: the image is
  the raw request body, sent as ``application/octet-stream`` (``curl -H "Content-Type:
  application/octet-stream" --data-binary @img.png``), so no multipart parser spools it to disk; the
  answer is JSON with the input and result as base64 PNGs, the time taken, the cost and, when the
  image was degraded first, PSNRs.

An upload is refused as early as the request allows: a foreign host, origin or site (``guard``) and a
``Content-Type`` other than the page's before anything else; a ``Content-Length`` over the limit, or a
full queue, before the body is read; a body without a length (chunked) as soon as it passes the limit;
too many pixels from the image header, before decoding. A refusal answered before the body is read
leaves the rest of the body to uvicorn, which reads and drops it, so the client still gets the answer.

Every refusal is JSON ``{"error": "<one line>"}`` with its status: 403 foreign client, 413 too large,
415 wrong ``Content-Type``, 422 not an image or a bad option, 503 busy. Nothing is stored between
requests: results travel back in the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from bbcu.core.errors import BbcuError
from bbcu.serve import pipeline
from bbcu.serve.catalog import Catalog
from bbcu.serve.guard import Guard
from bbcu.serve.jobs import JobQueue
from bbcu.serve.limits import (
    Limits,
    RequestError,
    check_image_header,
    check_media_type,
    check_upload_size,
)

STATIC_DIR = Path(__file__).parent / "static"
MAX_FILENAME_CHARS = 120


def create_app(
    limits: Limits | None = None, catalog: Catalog | None = None, allowed_hosts: Iterable[str] = ()
) -> FastAPI:
    """Build the application.

    Args:
        limits: Upload and queue limits (defaults: ``Limits()``).
        catalog: The models to offer; None discovers them now (bicubic plus the shipped models).
        allowed_hosts: Host names the server answers to besides the loopback names (the address it
            listens on, names it is reached by from other machines).

    Returns:
        The FastAPI app; its worker thread stops when the app's lifespan ends.
    """
    limits = limits or Limits()
    catalog = catalog or Catalog.discover()
    jobs = JobQueue(limits.queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = FastAPI(title="bbcu serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.jobs = jobs
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(BbcuError, _rejected)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _failed)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/info")
    async def info() -> dict[str, object]:
        return {
            "models": [choice.describe() for choice in catalog.choices],
            "limits": {
                "max_upload_bytes": limits.max_upload_bytes,
                "max_pixels": limits.max_pixels,
                "queue": limits.queue,
            },
        }

    @app.post("/api/restore")
    async def restore(
        request: Request,
        model: str,
        task: str = "sr",
        scale: int = 4,
        engine: str = "torch",
        degrade: bool = False,
        sigma: float = 25.0,
        quality: int = 10,
        filename: str = "upload",
    ) -> dict[str, object]:
        order = pipeline.Order(
            filename[:MAX_FILENAME_CHARS], task, scale, model, engine, degrade, sigma, quality
        )
        check_media_type(request.headers.get("content-type"))
        choice = catalog.choose(order.model, order.task, order.scale, order.engine)
        declared = request.headers.get("content-length")
        if declared is not None:  # uvicorn has checked that it is a number
            check_upload_size(int(declared), limits)
        with jobs.reserve() as slot:
            data = await read_body(request, limits)
            check_image_header(data, order.filename, limits)
            future = slot.submit(pipeline.run_order, data, order, choice, catalog)
        return await asyncio.wrap_future(future)

    return app


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused as soon as it passes the byte limit (a body without a length too).

    Memory never holds more than the limit: reading stops there, and uvicorn drops what the client
    still sends once the 413 answer is out.

    Raises:
        TooLargeError: Over the byte limit.
        RequestError: For an empty body.
    """
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        check_upload_size(received, limits)
        chunks.append(chunk)
    if not received:
        raise RequestError("no image was sent (the request body is empty)")
    return b"".join(chunks)


async def _rejected(_: Request, error: Exception) -> JSONResponse:
    """A refusal the client can act on: the error's own status, 422 for one that names none."""
    status = getattr(error, "status", 422)
    headers = {"Retry-After": "2"} if status == 503 else None
    return JSONResponse({"error": str(error)}, status_code=status, headers=headers)


async def _failed(_: Request, error: Exception) -> JSONResponse:
    """An unexpected failure (out of memory on a huge image, say) still answers JSON the page can show."""
    return JSONResponse(
        {"error": f"the restoration failed: {type(error).__name__}: {error}"}, status_code=500
    )


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's own parameter checks, reduced to the one-line message every other refusal has."""
    problems = error.errors() if isinstance(error, RequestValidationError) else []
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in problems)
    return JSONResponse({"error": f"bad request: {text or error}"}, status_code=422)
