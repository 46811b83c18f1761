"""Cassettes: record LLM calls once, replay them offline, event by event.

The layer sits in the HTTP client under the SDKs: while a cassette is in use, ``httpx2`` and
classic ``httpx`` clients (sync and async) route each request an LLM SDK sends through
:class:`Cassette`, which answers it from the recording or, when its mode allows, sends it on and
records the answer. Everything above the transport (the SDK's parsing, retries, streaming
objects, our connectors) runs unchanged, so a replayed call behaves as the live one did.

* **Which requests.** Requests sent by the OpenAI and Anthropic SDKs (they carry the
  ``x-stainless-lang`` header), plus any host named in ``hosts``. Other HTTP traffic of the
  test passes through untouched.
* **Matching.** Method, URL (query parameters in any order) and the JSON body with its keys in
  any order; ``ignore`` names volatile body fields (dotted paths such as ``metadata.user_id``).
  Identical requests are answered in the order they were recorded, each recording once.
* **Modes.** ``none`` never sends a request: one with no recording raises :class:`CassetteMiss`,
  naming the cassette, the request and the nearest recordings with the field that differed.
  ``once`` records a cassette that does not exist yet and otherwise acts as ``none``;
  ``new_episodes`` replays what it has and records the rest; ``all`` records everything anew.
* **Files.** One JSON file per cassette, indented so reviews can diff it, with a ``format``
  version. Streams (server-sent events) are kept event by event with their arrival times and
  replayed one event per chunk. Each recording keeps its original latency, time to first
  token, usage and cost, which the connectors put on the replayed call's trace record
  (``replayed: true``), so a cache hit never passes for a fast or free answer.
* **Secrets.** Request headers are kept only from a short allow-list (never ``Authorization``,
  ``x-api-key`` or ``api-key``); secret query parameters and body fields are replaced by
  ``<scrubbed>``, and so is every occurrence of a secret header's value anywhere in the file.

A :class:`CassetteMiss` derives from ``BaseException``, like ``pytest.fail``: the SDKs retry and
wrap any ``Exception`` raised in their transport into a vague connection error, which would hide
what was missing behind seconds of retries.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._records import format_timestamp

__all__ = [
    "FORMAT",
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "RecordMode",
    "install",
    "uninstall",
    "use_cassette",
]

FORMAT = "cert.cassette/1"
SCRUBBED = "<scrubbed>"
MULTIPART_BOUNDARY = "cert-cassette-boundary"

# Request headers worth keeping in a cassette (none of them carries a credential).
KEPT_REQUEST_HEADERS = frozenset(
    {"content-type", "accept", "anthropic-version", "anthropic-beta", "openai-beta", "openai-version"}
)
# Response headers never written: framing (the body is stored decoded), cookies, volatile noise.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "set-cookie",
        "cookie",
        "date",
        "server",
        "alt-svc",
        "cf-ray",
        "cf-cache-status",
        "strict-transport-security",
    }
)
# Names of request fields, query parameters and headers that hold credentials ("api_key",
# "subscription-key", "client_secret", "access_token", "Authorization", ...). Response bodies are
# scrubbed by the narrower _RESPONSE_SECRET_NAME and by value: a model's answer has fields named
# "token" (logprobs) and "signature" (thinking blocks) that are not secrets.
_SECRET_NAME = re.compile(
    r"(?i)(key|secret|token|password|passwd|signature|credentials?)$|^(sig|auth|authorization|cookie)$"
    r"|auth|session"
)
_RESPONSE_SECRET_NAME = re.compile(
    r"(?i)(api[-_]?key|secret|password|passwd|credentials?|access[-_]?token|refresh[-_]?token|"
    r"id[-_]?token|session[-_]?token|private[-_]?key)$"
)
# Key formats worth removing wherever they appear: OpenAI, Anthropic, Google API keys and OpenAI's
# ephemeral client secrets.
_SECRET_VALUE = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}|ek_[A-Za-z0-9_\-]{16,})"
)
_USERINFO = re.compile(r"(?<=://)[^/@?#]+@")
_DEFAULT_HOSTS = ("api.openai.com", "api.anthropic.com")


class RecordMode(str, enum.Enum):
    """When a cassette may send a request to the network and record its answer."""

    NONE = "none"
    ONCE = "once"
    NEW_EPISODES = "new_episodes"
    ALL = "all"


class CassetteError(ValueError):
    """A cassette file that cannot be used: ``file: field: problem``."""


class CassetteMiss(BaseException):
    """A request the cassette has no recording for, in a mode that may not record it.

    A ``BaseException`` (as ``pytest.fail`` is) so that the SDK's retry loop and the app's own
    ``except Exception`` handlers do not turn it into a connection error.
    """


# --------------------------------------------------------------------------- normalising


def _scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, SCRUBBED)
    return _SECRET_VALUE.sub(SCRUBBED, text)


def _scrub_json(value: Any, secrets: Sequence[str], names: re.Pattern[str] = _SECRET_NAME) -> Any:
    """A copy of ``value`` with secrets replaced: by field name (the whole value under a secret
    name, whatever its type, unless it is a number or a flag) and by value."""
    if isinstance(value, dict):
        return {
            k: (SCRUBBED if names.search(k) and _may_be_secret(v) else _scrub_json(v, secrets, names))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub_json(v, secrets, names) for v in value]
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    return value


def _may_be_secret(value: Any) -> bool:
    """Whether a value under a secret-like name could be a secret (counts like max_tokens are not)."""
    return value is not None and not isinstance(value, (bool, int, float))


def _scrub_userinfo(url: str) -> str:
    return _USERINFO.sub(SCRUBBED + "@", url)


def _secret_values(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Values of credential headers, so they can be removed wherever else they appear."""
    found = []
    for name, value in headers:
        lname = name.lower()
        if lname.startswith("x-stainless"):
            continue
        if _SECRET_NAME.search(lname):
            value = value.strip()
            if " " in value:  # "Bearer sk-...", "Basic ..."
                value = value.split(" ", 1)[1].strip()
            if len(value) >= 8:
                found.append(value)
    return found


def _scrub_url(url: str, secrets: Sequence[str]) -> str:
    base, sep, query = url.partition("?")
    base = _scrub_text(_scrub_userinfo(base), secrets)
    if not sep:
        return base
    params = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and _SECRET_NAME.search(name):
            value = SCRUBBED
        params.append(f"{name}{eq}{_scrub_text(value, secrets)}")
    return f"{base}?{'&'.join(sorted(params))}"


def _drop_field(body: Any, path: str) -> None:
    head, _, rest = path.partition(".")
    if isinstance(body, dict) and head in body:
        if rest:
            _drop_field(body[head], rest)
        else:
            del body[head]
    elif isinstance(body, list):
        for item in body:
            _drop_field(item, path)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class _Request:
    """A request as a cassette sees it: scrubbed, with its matching key."""

    __slots__ = ("body", "body_text", "headers", "key", "matched", "method", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        body_text: str | None,
        ignore: Sequence[str],
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body  # parsed JSON, or None
        self.body_text = body_text  # when the body is not JSON
        if body is not None and ignore:
            matched = json.loads(json.dumps(body))
            for path in ignore:
                _drop_field(matched, path)
        else:
            matched = body
        self.matched = matched  # what is compared: the body without the ignored fields
        self.key = (method, url, _canonical(matched) if body is not None else (body_text or ""))

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], ignore: Sequence[str]) -> _Request:
        return cls(
            str(stored["method"]),
            str(stored["url"]),
            dict(stored.get("headers") or {}),
            stored.get("body"),
            stored.get("body_text"),
            ignore,
        )

    def to_stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.headers:
            out["headers"] = self.headers
        if self.body is not None:
            out["body"] = self.body
        elif self.body_text:
            out["body_text"] = self.body_text
        return out

    def describe(self) -> str:
        model = self.body.get("model") if isinstance(self.body, dict) else None
        text = self.key[2]
        return f"{self.method} {self.url}" + (f" model={model}" if model else "") + f" body {_digest(text)}"


def _first_difference(recorded: Any, requested: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(recorded, dict) and isinstance(requested, dict):
        for key in sorted(set(recorded) | set(requested)):
            if key not in recorded:
                return (f"{path}.{key}".lstrip("."), "(absent)", requested[key])
            if key not in requested:
                return (f"{path}.{key}".lstrip("."), recorded[key], "(absent)")
            found = _first_difference(recorded[key], requested[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(requested, list):
        for i, (a, b) in enumerate(zip(recorded, requested, strict=False)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(recorded) != len(requested):
            return (f"{path} length".lstrip("."), len(recorded), len(requested))
        return None
    if recorded != requested:
        return (path.lstrip(".") or "body", recorded, requested)
    return None


def _differences(recorded: Any, requested: Any) -> int:
    if isinstance(recorded, dict) and isinstance(requested, dict):
        return sum(
            _differences(recorded.get(k), requested.get(k)) if k in recorded and k in requested else 1
            for k in set(recorded) | set(requested)
        )
    if isinstance(recorded, list) and isinstance(requested, list):
        return sum(_differences(a, b) for a, b in zip(recorded, requested, strict=False)) + abs(
            len(recorded) - len(requested)
        )
    return 0 if recorded == requested else 1


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --------------------------------------------------------------------------- the cassette


class Entry:
    """What a response carries (in ``response.extensions["cert_cassette"]``) for the connectors.

    ``replayed`` is true when the response came from the cassette; the connectors then report
    the recorded latency, time to first token and cost. While recording, the connectors hand the
    call's usage and cost back through :meth:`note_call` so the cassette keeps them.
    """

    __slots__ = ("cassette", "recorded", "replayed")

    def __init__(self, cassette: Cassette, recorded: dict[str, Any], replayed: bool) -> None:
        self.cassette = cassette
        self.recorded = recorded
        self.replayed = replayed

    def _number(self, *names: str) -> float | None:
        for name in names:
            value = self.recorded.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None

    @property
    def latency_ms(self) -> float | None:
        """The whole call as the SDK's caller saw it (retries included), else the HTTP exchange."""
        return self._number("call_ms", "latency_ms")

    @property
    def ttft_ms(self) -> float | None:
        """Time to the first token (of text or a tool call), as measured live."""
        return self._number("ttft_ms")

    @property
    def cost_usd(self) -> float | None:
        return self._number("cost_usd")

    def note_call(
        self,
        usage: Mapping[str, Any] | None,
        cost_usd: float | None,
        price_source: str | None,
        *,
        call_ms: float | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        """What the connector measured of the call this response answered (recording only)."""
        if self.replayed:
            return
        with self.cassette._lock:
            if call_ms is not None:
                self.recorded["call_ms"] = round(call_ms, 3)
            if ttft_ms is not None:
                self.recorded["ttft_ms"] = round(ttft_ms, 3)
            if usage:
                self.recorded["usage"] = {k: v for k, v in usage.items() if v is not None}
            self.recorded["cost_usd"] = cost_usd
            if price_source:
                self.recorded["price_source"] = price_source
            self.cassette._dirty = True


class Cassette:
    """The recordings of one test (or any block of code): load, match, record, save.

    Use it through :func:`use_cassette`, or ``with Cassette(path, mode):`` which does the same.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: RecordMode | str = RecordMode.NONE,
        *,
        ignore: Sequence[str] = (),
        hosts: Sequence[str] = (),
        upstream: str | None = None,
        source: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.source = source  # where the mode came from, for messages ("--cert-record-mode")
        try:
            self.mode = RecordMode(mode)
        except ValueError:
            choices = ", ".join(m.value for m in RecordMode)
            raise ValueError(f"record mode {mode!r} is not one of {choices}") from None
        self.ignore = tuple(ignore)
        self.hosts = frozenset(h.lower() for h in (*_DEFAULT_HOSTS, *hosts))
        self.upstream = upstream.rstrip("/") if upstream else None
        self._lock = threading.Lock()
        self._dirty = False
        # A cassette written earlier in this run (a file shared by several tests) counts as new:
        # every test that shares it may still record into it.
        self.existed = self.path.exists() and (
            _written_this_run is None or _key(self.path) not in _written_this_run
        )
        self.interactions: list[dict[str, Any]] = []  # what the file holds (and new recordings)
        self._requests: list[_Request] = []
        self._used: list[bool] = []
        self.replayed = 0
        self.recorded = 0
        self._streams: list[_StreamRecorder] = []  # streams being recorded, not yet closed
        if self.path.exists() and (self.mode is not RecordMode.ALL or not self.existed):
            self._load()

    # ---- loading and saving

    def _load(self) -> None:
        where = str(self.path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CassetteError(f"{where}: cannot read the cassette: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CassetteError(f"{where}:{exc.lineno}: not JSON: {exc.msg}") from exc
        if not isinstance(data, dict):
            raise CassetteError(f"{where}: expected a JSON object with 'format' and 'interactions'")
        found = data.get("format")
        if found != FORMAT:
            raise CassetteError(
                f"{where}: format: found {found!r}, this pytest-cert reads {FORMAT!r}; "
                "re-record it with --cert-record-mode=all"
            )
        interactions = data.get("interactions")
        if not isinstance(interactions, list):
            raise CassetteError(f"{where}: interactions: expected a list")
        for i, item in enumerate(interactions):
            self._check(item, f"{where}: interactions[{i}]")
            self.interactions.append(item)
            self._requests.append(_Request.from_stored(item["request"], self.ignore))
            self._used.append(False)

    @staticmethod
    def _check(item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise CassetteError(f"{where}: expected an object")
        request, response = item.get("request"), item.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise CassetteError(f"{where}: expected 'request' and 'response' objects")
        for field in ("method", "url"):
            if not isinstance(request.get(field), str):
                raise CassetteError(f"{where}.request.{field}: expected a string")
        if type(response.get("status")) is not int:
            raise CassetteError(f"{where}.response.status: expected an integer")
        events = response.get("events")
        if events is not None and not (
            isinstance(events, list)
            and all(
                isinstance(e, dict) and (isinstance(e.get("data"), str) or isinstance(e.get("base64"), str))
                for e in events
            )
        ):
            raise CassetteError(
                f"{where}.response.events: expected a list of {{'t_ms', 'data' or 'base64'}} objects"
            )
        if not isinstance(item.get("recorded", {}), dict):
            raise CassetteError(f"{where}.recorded: expected an object")

    def save(self) -> bool:
        """Write the file when something was recorded (atomically); return whether it wrote.

        A stream still open (never read to its end nor closed) is kept as far as it was read,
        marked ``incomplete``."""
        for recorder in list(self._streams):
            recorder.close(exhausted=False)
        with self._lock:
            # Only complete recordings: a call still running (in a thread that outlived the
            # block) or one that broke before its answer has nothing to replay.
            keep = [i for i in self.interactions if type(i.get("response", {}).get("status")) is int]
            if not self._dirty or not keep or (self.mode is RecordMode.ALL and not self.recorded):
                return False  # nothing new; or nothing at all (a test skipped before its calls)
            document = {"format": FORMAT, "interactions": keep}
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            Path(tmp).chmod(0o644)  # mkstemp makes it private; a cassette is a project file
            Path(tmp).replace(self.path)
            if _written_this_run is not None:
                _written_this_run.add(_key(self.path))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def __enter__(self) -> Cassette:
        _push(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _pop(self)
        self.save()

    # ---- matching

    @property
    def may_record(self) -> bool:
        if self.mode is RecordMode.NONE:
            return False
        if self.mode is RecordMode.ONCE:
            return not self.existed
        return True

    def in_scope(self, request: Any) -> bool:
        return "x-stainless-lang" in request.headers or request.url.host.lower() in self.hosts

    def _normalise(self, request: Any) -> tuple[_Request, list[str]]:
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        secrets = _secret_values(raw_headers)
        headers = {k.lower(): v for k, v in raw_headers if k.lower() in KEPT_REQUEST_HEADERS}
        content = request.content  # read by handle()/handle_async() first (multipart bodies stream)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/") and "boundary=" in ctype:
            # A random boundary per request: replaced by a fixed one, so uploads can match.
            boundary = ctype.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"')
            if boundary:
                content = content.replace(boundary.encode(), MULTIPART_BOUNDARY.encode())
                headers["content-type"] = ctype.replace(boundary, MULTIPART_BOUNDARY)
        body: Any = None
        body_text: str | None = None
        if content:
            try:
                body = _scrub_json(json.loads(content), secrets)
            except (ValueError, UnicodeDecodeError):
                try:
                    body_text = _scrub_text(content.decode("utf-8"), secrets)
                except UnicodeDecodeError:
                    body_text = "base64:" + base64.b64encode(content).decode()
        url = _scrub_url(str(request.url), secrets)
        return _Request(request.method.upper(), url, headers, body, body_text, self.ignore), secrets

    def _find(self, wanted: _Request) -> int | None:
        with self._lock:
            for i, (recorded, used) in enumerate(zip(self._requests, self._used, strict=False)):
                if not used and recorded.key == wanted.key:
                    self._used[i] = True
                    return i
        return None

    def miss_message(self, wanted: _Request) -> str:
        exists = ", the cassette exists" if self.mode is RecordMode.ONCE else ""
        source = f" from {self.source}" if self.source else ""
        lines = [
            f"cert replay: no recording for this request in cassette {self.path} "
            f"(record mode {self.mode.value}{source}{exists})",
            f"  request: {wanted.describe()}",
        ]
        same = [i for i, r in enumerate(self._requests) if r.key == wanted.key]
        if same:
            lines.append(
                f"  the same request was recorded {len(same)} time(s) and each recording was already used; "
                "a test that sends it more often needs it recorded more often"
            )
        elif not self._requests:
            lines.append(
                "  the cassette holds no recordings" + ("" if self.existed else " (the file does not exist)")
            )
        else:

            def distance(r: _Request) -> tuple[int, int, int]:
                return (
                    r.method != wanted.method,
                    r.url != wanted.url,
                    _differences(r.matched, wanted.matched) if r.body is not None else 1,
                )

            ranked = sorted(range(len(self._requests)), key=lambda i: distance(self._requests[i]))[:3]
            lines.append("  nearest recordings:")
            for i in ranked:
                r = self._requests[i]
                if r.method != wanted.method:
                    why = f"method: recorded {r.method}, requested {wanted.method}"
                elif r.url != wanted.url:
                    why = f"url: recorded {r.url}, requested {wanted.url}"
                else:
                    diff = _first_difference(r.matched, wanted.matched) if r.body is not None else None
                    if diff is None:
                        why = "body: " + ("already used" if self._used[i] else "differs")
                    else:
                        why = f"body.{diff[0]}: recorded {_short(diff[1])}, requested {_short(diff[2])}"
                used = " (already used)" if self._used[i] else ""
                lines.append(f"    #{i} {r.describe()}{used}\n        differs in {why}")
        lines.append(
            "  to record it, run with --cert-record-mode=new_episodes (or once for a new cassette, all to "
            "re-record); a field that changes on every run can be ignored with cert_replay_ignore"
        )
        return "\n".join(lines)

    # ---- serving a request (called by the patched transports)

    def _replay_response(self, lib: Any, index: int) -> Any:
        item = self.interactions[index]
        stored = item["response"]
        headers = [
            (name, value)
            for name, values in (stored.get("headers") or {}).items()
            for value in (values if isinstance(values, list) else [values])
        ]
        entry = Entry(self, item.setdefault("recorded", {}), replayed=True)
        extensions = {"cert_cassette": entry}
        with self._lock:
            self.replayed += 1
        if "events" in stored:
            chunks = [
                e["data"].encode() if "data" in e else base64.b64decode(e["base64"]) for e in stored["events"]
            ]
            stream = _replay_stream(lib, chunks, stored.get("error"))
            return lib.Response(stored["status"], headers=headers, stream=stream, extensions=extensions)
        if "body" in stored:
            content = json.dumps(stored["body"], ensure_ascii=False).encode()
        elif "body_base64" in stored:
            content = base64.b64decode(stored["body_base64"])
        else:
            content = str(stored.get("body_text", "")).encode()
        return lib.Response(stored["status"], headers=headers, content=content, extensions=extensions)

    def _begin(self, request: Any) -> tuple[_Request, list[str], int | None]:
        __tracebackhide__ = True
        wanted, secrets = self._normalise(request)
        index = None if self.mode is RecordMode.ALL else self._find(wanted)
        if index is None and not self.may_record:
            raise CassetteMiss(self.miss_message(wanted))
        return wanted, secrets, index

    def _outgoing(self, lib: Any, request: Any) -> Any:
        """The request to send while recording: uncompressed answers, and the upstream if set."""
        url = request.url
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"accept-encoding", b"host")]
        headers.append((b"accept-encoding", b"identity"))
        if self.upstream:
            target = lib.URL(self.upstream)
            url = url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        return lib.Request(
            request.method, url, headers=headers, content=request.content, extensions=request.extensions
        )

    def _new_item(self, wanted: _Request) -> tuple[dict[str, Any], Entry]:
        recorded: dict[str, Any] = {"at": format_timestamp(time.time_ns())}
        if self.upstream:
            recorded["upstream"] = _scrub_userinfo(self.upstream)
        item: dict[str, Any] = {"request": wanted.to_stored(), "response": {}, "recorded": recorded}
        with self._lock:
            self.interactions.append(item)
            self._requests.append(wanted)
            self._used.append(True)
            self.recorded += 1
            self._dirty = True
        return item, Entry(self, recorded, replayed=False)

    def _discard(self, item: dict[str, Any]) -> None:
        with self._lock:
            for i, candidate in enumerate(self.interactions):
                if candidate is item:
                    del self.interactions[i], self._requests[i], self._used[i]
                    self.recorded -= 1
                    break

    def _stored_headers(self, response: Any, secrets: Sequence[str]) -> dict[str, Any]:
        """Response headers worth keeping; a repeated header keeps its values as a list."""
        out: dict[str, Any] = {}
        for key, value in response.headers.multi_items():
            name = key.lower()
            if name in DROPPED_RESPONSE_HEADERS or _RESPONSE_SECRET_NAME.search(name) or "auth" in name:
                continue
            text = _scrub_text(value, secrets)
            if name in out:
                previous = out[name]
                out[name] = [*previous, text] if isinstance(previous, list) else [previous, text]
            else:
                out[name] = text
        return out

    def _finish_body(
        self,
        item: dict[str, Any],
        status: int,
        headers: dict[str, Any],
        body: bytes,
        secrets: Sequence[str],
        t0: float,
    ) -> None:
        stored: dict[str, Any] = {"status": status, "headers": headers}
        try:
            stored["body"] = _scrub_json(json.loads(body), secrets, _RESPONSE_SECRET_NAME)
        except (ValueError, UnicodeDecodeError):
            try:
                stored["body_text"] = _scrub_text(body.decode("utf-8"), secrets)
            except UnicodeDecodeError:
                stored["body_base64"] = base64.b64encode(body).decode()
        with self._lock:
            item["response"] = stored
            item["recorded"]["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)

    def _record(
        self, lib: Any, inner: Any, pick: Callable[[Any], Any], request: Any, wanted: _Request
    ) -> tuple[dict[str, Any], Entry, Any, Any]:
        """A new recording: its item and entry, the request to send, and the transport to send
        it through (the upstream's own when there is one: proxies are chosen per URL)."""
        item, entry = self._new_item(wanted)
        outgoing = self._outgoing(lib, request)
        return item, entry, outgoing, pick(outgoing.url) if self.upstream else inner

    def handle(self, lib: Any, inner: Any, pick: Callable[[Any], Any], request: Any) -> Any:
        __tracebackhide__ = True
        request.read()  # a streamed (multipart) body, so that it can be matched and sent again
        wanted, secrets, index = self._begin(request)
        if index is not None:
            return self._replay_response(lib, index)
        item, entry, outgoing, inner = self._record(lib, inner, pick, request, wanted)
        t0 = time.perf_counter()
        try:
            response = inner.handle_request(outgoing)
            if _is_stream(response):
                return self._stream_response(lib, item, entry, response, secrets, t0, is_async=False)
            body = response.read()
            response.close()
        except BaseException:
            self._discard(item)  # no complete answer came back: nothing to record
            raise
        return self._complete(lib, item, entry, response, body, secrets, t0)

    async def handle_async(self, lib: Any, inner: Any, pick: Callable[[Any], Any], request: Any) -> Any:
        __tracebackhide__ = True
        await request.aread()
        wanted, secrets, index = self._begin(request)
        if index is not None:
            return self._replay_response(lib, index)
        item, entry, outgoing, inner = self._record(lib, inner, pick, request, wanted)
        t0 = time.perf_counter()
        try:
            response = await inner.handle_async_request(outgoing)
            if _is_stream(response):
                return self._stream_response(lib, item, entry, response, secrets, t0, is_async=True)
            body = await response.aread()
            await response.aclose()
        except BaseException:
            self._discard(item)
            raise
        return self._complete(lib, item, entry, response, body, secrets, t0)

    def _complete(
        self,
        lib: Any,
        item: dict[str, Any],
        entry: Entry,
        response: Any,
        body: bytes,
        secrets: list[str],
        t0: float,
    ) -> Any:
        headers = self._stored_headers(response, secrets)
        self._finish_body(item, response.status_code, headers, body, secrets, t0)
        return lib.Response(
            response.status_code,
            headers=[(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING],
            content=body,
            extensions={**response.extensions, "cert_cassette": entry},
        )

    def _stream_response(
        self,
        lib: Any,
        item: dict[str, Any],
        entry: Entry,
        response: Any,
        secrets: list[str],
        t0: float,
        *,
        is_async: bool,
    ) -> Any:
        """Pass a streamed answer through to the SDK as it arrives, recording it on the way."""
        recorder = _StreamRecorder(self, item, response, secrets, t0)
        with self._lock:
            self._streams.append(recorder)
        stream = _recording_stream(lib, response.stream, recorder, is_async=is_async)
        return lib.Response(
            response.status_code,
            headers=response.headers.multi_items(),
            stream=stream,
            extensions={**response.extensions, "cert_cassette": entry},
        )


_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding"})
# Answers recorded chunk by chunk as they pass (server-sent events; AWS Bedrock's event stream).
_STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream")
# Events that end a stream: seeing one means the answer was complete, even when the SDK closes
# the stream right after it without reading on.
_TERMINAL = (
    "data: [DONE]",
    "event: message_stop",
    '"type": "response.completed"',
    '"type":"response.completed"',
)


def _is_stream(response: Any) -> bool:
    ctype = response.headers.get("content-type", "").lower()
    return any(t in ctype for t in _STREAM_TYPES)


class _StreamRecorder:
    """Collects a streamed answer as it passes to the SDK; stores it at the end.

    Server-sent events are stored as text, event by event; other streams (and any stream in an
    encoding we cannot decode) as their raw chunks in base64. Each piece keeps its arrival time.
    """

    def __init__(
        self,
        cassette: Cassette,
        item: dict[str, Any],
        response: Any,
        secrets: list[str],
        t0: float,
    ) -> None:
        self.cassette = cassette
        self.item = item
        self.status = response.status_code
        self.secrets = secrets
        self.t0 = t0
        self.buffer = ""
        self.events: list[dict[str, Any]] = []
        self.first_ms: float | None = None
        self.done = False
        self.terminal = False
        self.error: dict[str, str] | None = None
        headers = cassette._stored_headers(response, secrets)
        encoding = response.headers.get("content-encoding", "identity").lower()
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
        self.decompress = zlib.decompressobj(wbits) if wbits else None
        self.text = "text/event-stream" in response.headers.get("content-type", "").lower() and (
            encoding in ("identity", "gzip", "deflate")
        )
        if not self.text and encoding != "identity":
            headers["content-encoding"] = encoding  # kept raw: the client decodes it on replay
        self.headers = headers
        self.decoder = _utf8_decoder()

    def _now(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 3)

    def feed(self, chunk: bytes) -> None:
        now = self._now()
        if self.first_ms is None:
            self.first_ms = now
        if not self.text:
            self.events.append({"t_ms": now, "base64": base64.b64encode(chunk).decode()})
            return
        data = self.decompress.decompress(chunk) if self.decompress else chunk
        self.buffer += self.decoder.decode(data).replace("\r\n", "\n")
        while "\n\n" in self.buffer:
            event, self.buffer = self.buffer.split("\n\n", 1)
            if any(marker in event for marker in _TERMINAL):
                self.terminal = True
            self.events.append({"t_ms": now, "data": _scrub_text(event, self.secrets) + "\n\n"})

    def broke(self, exc: BaseException) -> None:
        """The stream failed mid-way (a network error): replay fails the same way at that point."""
        self.error = {"type": type(exc).__name__, "message": str(exc)}

    def close(self, exhausted: bool) -> None:
        if self.done:
            return
        self.done = True
        with self.cassette._lock:
            if self in self.cassette._streams:
                self.cassette._streams.remove(self)
        if self.buffer:
            self.events.append({"t_ms": self._now(), "data": _scrub_text(self.buffer, self.secrets)})
        response: dict[str, Any] = {"status": self.status, "headers": self.headers, "events": self.events}
        if self.error:
            response["error"] = self.error
        with self.cassette._lock:
            self.item["response"] = response
            recorded = self.item["recorded"]
            recorded["latency_ms"] = self._now()
            if self.first_ms is not None:
                recorded["first_byte_ms"] = self.first_ms
            if self.error or not (exhausted or self.terminal):
                recorded["incomplete"] = True
            self.cassette._dirty = True


def _utf8_decoder() -> Any:
    import codecs

    return codecs.getincrementaldecoder("utf-8")(errors="replace")


# --------------------------------------------------------------------------- streams per library

_stream_classes: dict[Any, tuple[type, type, type]] = {}


def _classes(lib: Any) -> tuple[type, type, type]:
    """Stream classes for one HTTP library (``httpx2`` or ``httpx``), made once."""
    try:
        return _stream_classes[lib]
    except KeyError:
        pass

    class ReplayStream(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[misc]
        """The recorded events of a stream, one chunk each, and the error that cut it, if any."""

        def __init__(self, chunks: list[bytes], error: Mapping[str, str] | None) -> None:
            self.chunks = chunks
            self.error = error

        def _raise(self) -> None:
            if self.error:
                kind = getattr(lib, str(self.error.get("type")), None)
                if not (isinstance(kind, type) and issubclass(kind, lib.TransportError)):
                    kind = lib.ReadError
                raise kind(str(self.error.get("message", "")))

        def __iter__(self) -> Iterator[bytes]:
            yield from self.chunks
            self._raise()

        async def __aiter__(self) -> Any:
            for chunk in self.chunks:
                yield chunk
            self._raise()

    class SyncRecording(lib.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, recorder: _StreamRecorder) -> None:
            self.inner = inner
            self.recorder = recorder
            self.complete = False

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self.inner:
                    self.recorder.feed(chunk)
                    yield chunk
            except Exception as exc:
                self.recorder.broke(exc)
                raise
            self.complete = True

        def close(self) -> None:
            try:
                self.inner.close()
            finally:
                self.recorder.close(self.complete)

    class AsyncRecording(lib.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, recorder: _StreamRecorder) -> None:
            self.inner = inner
            self.recorder = recorder
            self.complete = False

        async def __aiter__(self) -> Any:
            try:
                async for chunk in self.inner:
                    self.recorder.feed(chunk)
                    yield chunk
            except Exception as exc:
                self.recorder.broke(exc)
                raise
            self.complete = True

        async def aclose(self) -> None:
            try:
                await self.inner.aclose()
            finally:
                self.recorder.close(self.complete)

    _stream_classes[lib] = (ReplayStream, SyncRecording, AsyncRecording)
    return _stream_classes[lib]


def _replay_stream(lib: Any, chunks: list[bytes], error: Mapping[str, str] | None = None) -> Any:
    return _classes(lib)[0](chunks, error)


def _recording_stream(lib: Any, inner: Any, recorder: _StreamRecorder, *, is_async: bool) -> Any:
    return _classes(lib)[2 if is_async else 1](inner, recorder)


# --------------------------------------------------------------------------- patching the clients

_active: list[Cassette] = []  # process-wide: threads a test starts see its cassette too
# Cassette files written in this test run, once a runner asks for it (see track_run()).
_written_this_run: set[str] | None = None


def track_run() -> None:
    """Start a run (the pytest plugin calls this): from now on a cassette file written earlier in
    the run counts as new, so every test sharing it (``cassette="shared/faq.json"``) may record
    into it in ``once`` and ``all`` modes. Outside a runner each block stands alone."""
    global _written_this_run
    _written_this_run = set()


def _key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


_state_lock = threading.RLock()
_installed: list[tuple[type, Any]] = []


def _push(cassette: Cassette) -> None:
    with _state_lock:
        install()
        _active.append(cassette)


def _pop(cassette: Cassette) -> None:
    with _state_lock:
        if cassette in _active:
            _active.remove(cassette)


def active_cassette() -> Cassette | None:
    """The cassette requests go to now (the innermost one in use), if any."""
    return _active[-1] if _active else None


def _transport_class(lib: Any) -> type:
    class CassetteTransport(lib.BaseTransport, lib.AsyncBaseTransport):  # type: ignore[misc]
        """The client's own transport, with the active cassette in front of it."""

        def __init__(self, inner: Any, pick: Callable[[Any], Any]) -> None:
            self.inner = inner
            self.pick = pick

        def handle_request(self, request: Any) -> Any:
            __tracebackhide__ = True
            cassette = active_cassette()
            if cassette is None or not cassette.in_scope(request):
                return self.inner.handle_request(request)
            return cassette.handle(lib, self.inner, self.pick, request)

        async def handle_async_request(self, request: Any) -> Any:
            __tracebackhide__ = True
            cassette = active_cassette()
            if cassette is None or not cassette.in_scope(request):
                return await self.inner.handle_async_request(request)
            return await cassette.handle_async(lib, self.inner, self.pick, request)

        def close(self) -> None:
            self.inner.close()

        async def aclose(self) -> None:
            await self.inner.aclose()

    return CassetteTransport


def _libraries() -> list[Any]:
    import importlib
    import sys

    libs = []
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        libs.append(module)
    return libs


def install() -> None:
    """Route the HTTP clients' requests through the active cassette (idempotent).

    Patches ``_transport_for_url`` of ``httpx2`` and ``httpx`` ``Client``/``AsyncClient``: the
    one place both libraries pick the transport for a request, whatever the client's mounts,
    proxies or custom transport. With no cassette in use the original transport is returned.
    """
    with _state_lock:
        if _installed:
            return
        for lib in _libraries():
            transport = _transport_class(lib)
            for cls in (lib.Client, lib.AsyncClient):
                original = cls.__dict__["_transport_for_url"]

                def _transport_for_url(
                    self: Any, url: Any, _original: Any = original, _t: Any = transport
                ) -> Any:
                    inner = _original(self, url)
                    if not _active:
                        return inner
                    # The recording may go to another origin (upstream), through its own transport
                    # (proxies are chosen per URL).
                    return _t(inner, lambda other: _original(self, other))

                _transport_for_url.__wrapped__ = original  # type: ignore[attr-defined]
                cls._transport_for_url = _transport_for_url
                _installed.append((cls, original))


def uninstall() -> None:
    """Put the HTTP clients' original methods back."""
    with _state_lock:
        while _installed:
            cls, original = _installed.pop()
            cls._transport_for_url = original  # type: ignore[attr-defined]


@contextmanager
def use_cassette(
    path: str | os.PathLike[str],
    mode: RecordMode | str = RecordMode.NONE,
    *,
    ignore: Sequence[str] = (),
    hosts: Sequence[str] = (),
    upstream: str | None = None,
) -> Iterator[Cassette]:
    """Replay (and, as ``mode`` allows, record) the LLM calls made inside the block.

    ``upstream`` sends recorded requests to another origin (``http://127.0.0.1:8765``) while the
    cassette keeps the URL the app addressed: for recording against a local stand-in server or a
    gateway. The cassette is saved when the block ends.
    """
    with Cassette(path, mode, ignore=ignore, hosts=hosts, upstream=upstream) as cassette:
        yield cassette
