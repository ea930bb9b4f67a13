"""``POST /upload``: a Data-page upload, its body written to disk as it arrives (assets/upload.js sends it).

The file is the request's body as it is (no form encoding, no base64), with its name in the
``X-File-Name`` header (URL-encoded). A caller needs the Data page's role (the guard checks it, and
the CSRF token of its session). The answer is ``{"id", "file", "size"}``, which the page's
``data-uploaded`` store takes; a file past the size limit is refused before it is read (413).
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Blueprint, Response, jsonify, request

from bi_app.errors import error_response
from bi_app.importing import UploadError, receive_upload

UPLOAD_PATH = "/upload"
uploads = Blueprint("uploads", __name__)


@uploads.post(UPLOAD_PATH)
def upload() -> tuple[Response, int] | Response:
    size = request.content_length
    if size is None:
        return error_response(411, "length_required", "send the file with its length (Content-Length)")
    try:
        received = receive_upload(request.stream, size, unquote(request.headers.get("X-File-Name", "")))
    except UploadError as exc:
        return error_response(exc.status, "upload_refused", str(exc))
    return jsonify(id=received.id, file=received.file, size=size)

