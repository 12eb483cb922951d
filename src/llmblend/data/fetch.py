"""Fetch a pinned remote file, or read the same bytes from a local mirror.

The mirror has the same layout as upstream, keyed by repository name and revision:

    https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>          -> <mirror>/<repo>/<commit>/<path>
    https://huggingface.co/datasets/<owner>/<repo>/resolve/<rev>/<path>       -> <mirror>/<repo>/<rev>/<path>

With a mirror set (config key `mirror` or the env var LLMBLEND_MIRROR) the mirror is the only place
looked at: a missing file is an error naming the URL and the mirror path, never a silent download.
Without one, the file is downloaded once into `data/_downloads/` and reused.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmblend.errors import LLMBlendError
from llmblend.io import atomic_path, sha256_file

DOWNLOADS = Path("data") / "_downloads"

_PATTERNS = [
    re.compile(r"^https://raw\.githubusercontent\.com/[^/]+/(?P<repo>[^/]+)/(?P<rev>[^/]+)/(?P<path>.+)$"),
    re.compile(r"^https://huggingface\.co/datasets/[^/]+/(?P<repo>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"),
]


def mirror_relpath(url: str) -> Path:
    """The file's place under the mirror (or data/_downloads/). Its parts come from config values (a
    commit, a model name): one that is empty, '.' or '..' would step out of that folder, so it is refused."""
    for pat in _PATTERNS:
        m = pat.match(url)
        if m:
            parts = [m["repo"], m["rev"], *m["path"].split("/")]
            bad = [x for x in parts if x in ("", ".", "..") or "\\" in x or "\0" in x]
            if bad:
                raise LLMBlendError(f"refused source {url}: the part {bad[0]!r} would lead outside the mirror "
                                    "and data/_downloads/ (check the source's commit, revision, models and files)")
            return Path(*parts)
    raise LLMBlendError(f"no mirror layout is known for {url}")


def fetch(url: str, mirror: str | None, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Return a local path holding the bytes of `url` (checked against `sha256` when given)."""
    if mirror:
        path = Path(mirror) / mirror_relpath(url)
        if not path.is_file():
            raise LLMBlendError(f"source {url} is not in the mirror: tried {path}")
    else:
        path = DOWNLOADS / mirror_relpath(url)
        if not path.is_file():
            _download(url, path, timeout)
    if sha256 and sha256_file(path) != sha256:
        raise LLMBlendError(f"{path} (from {url}): sha256 {sha256_file(path)} differs from the pinned {sha256}")
    return path


def _download(url: str, path: Path, timeout: float) -> None:
    import httpx

    try:
        with atomic_path(path) as tmp, httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r:
            r.raise_for_status()
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise LLMBlendError(f"source {url} cannot be reached ({type(e).__name__}: {e}); "
                            "set `mirror:` or LLMBLEND_MIRROR to a local copy") from None
