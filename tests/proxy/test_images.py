"""Images through the real proxy: upload, download, refusals, and vision chat requests."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lai.engine.events import RequestFinished
from tests.harness import RunningProxy, model, provider
from tests.store.image_files import (
    EXTENSIONS,
    FORMATS,
    files_under,
    image_bytes,
    png_declaring,
)


def images_root(proxy: RunningProxy) -> Path:
    return proxy.settings.server.data_dir / "images"


async def upload(
    proxy: RunningProxy,
    data: bytes,
    *,
    conversation_id: str = "conv-1",
    message_id: str = "msg-1",
    filename: str = "shot.png",
    content_type: str = "image/png",
) -> httpx.Response:
    return await proxy.http.post(
        "/v1/images/upload",
        params={"conversation_id": conversation_id, "message_id": message_id},
        files={"file": (filename, data, content_type)},
    )


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert err["type"] == "invalid_request_error"
    if code is not None:
        assert err["code"] == code
    return str(err["message"])


@pytest.fixture
async def proxy(proxy_factory, upstream) -> RunningProxy:  # type: ignore[no-untyped-def]
    return await proxy_factory(  # type: ignore[no-any-return]
        [provider("box", upstream.url)],
        [model("eyes", "box", capabilities={"vision": True})],
        max_images_per_message=3,
    )


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_upload_each_format_and_get_it_back(proxy: RunningProxy, fmt: str) -> None:
    data = image_bytes(fmt, (33, 21))
    # The client's Content-Type and name claim something else: the bytes decide.
    r = await upload(proxy, data, filename="../My Screenshot.txt", content_type="text/plain")
    assert r.status_code == 200, r.text
    ext = EXTENSIONS[fmt]
    answer = r.json()
    assert answer == {
        "filename": f"001_My_Screenshot.{ext}",
        "path": f"conv-1/msg-1/001_My_Screenshot.{ext}",
        "size": len(data),
        "mimeType": FORMATS[fmt],
        "width": 33,
        "height": 21,
    }
    assert (images_root(proxy) / answer["path"]).read_bytes() == data

    got = await proxy.http.get(f"/v1/images/{answer['path']}")
    assert got.status_code == 200
    assert got.headers["content-type"] == FORMATS[fmt]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.content == data


async def test_uploads_to_one_message_are_numbered_and_capped(proxy: RunningProxy) -> None:
    results = await asyncio.gather(*(upload(proxy, image_bytes()) for _ in range(5)))
    ok = sorted(r.json()["filename"] for r in results if r.status_code == 200)
    assert ok == ["001_shot.png", "002_shot.png", "003_shot.png"]
    refused = [r for r in results if r.status_code != 200]
    assert len(refused) == 2
    for r in refused:
        assert "at most 3" in assert_openai_error(r, 400)
    assert sorted(p.name for p in (images_root(proxy) / "conv-1" / "msg-1").iterdir()) == ok


async def test_an_image_over_the_limit_is_413(proxy_factory, upstream, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proxy = await proxy_factory(
        [provider("box", upstream.url)], [model("m", "box")], max_image_size=2048
    )
    before = files_under(tmp_path)
    r = await upload(proxy, image_bytes("PNG", (64, 64), noise=True))
    message = assert_openai_error(r, 413, "request_too_large")
    assert "server.max_image_size" in message
    assert not images_root(proxy).exists()
    assert files_under(tmp_path) == before
    assert (await upload(proxy, image_bytes("PNG", (8, 8)))).status_code == 200


REFUSED = {
    "text": (b"hello, I am a text file\n" * 20, "plain.txt", "text/plain", "not a PNG"),
    "renamed-text": (b"hello, I am a text file\n" * 20, "cat.png", "image/png", "not a PNG"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "image/svg+xml", "not a PNG"),
    "bmp": (b"BM" + b"\0" * 100, "a.bmp", "image/bmp", "not a PNG"),
    "bomb": (png_declaring(10_000, 10_000, full=True), "bomb.png", "image/png", "bomb"),
    "bomb-header": (png_declaring(200_000, 200_000), "bomb.png", "image/png", "bomb"),
    "truncated": (
        image_bytes("PNG", (64, 64), noise=True)[:4000],
        "cut.png",
        "image/png",
        "truncated",
    ),
    "empty": (b"", "empty.png", "image/png", "empty"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_bad_files_are_refused_and_leave_nothing(
    proxy: RunningProxy, tmp_path: Path, case: str
) -> None:
    data, name, ctype, why = REFUSED[case]
    before = files_under(tmp_path)
    r = await upload(proxy, data, filename=name, content_type=ctype)
    assert why in assert_openai_error(r, 400)
    assert files_under(tmp_path) == before
    assert not images_root(proxy).exists()


UNSAFE_IDS = ["..", ".", "../../etc", "a/b", "/tmp", "a\\b", "a\x00b", "x" * 65, "a b", "%2e%2e"]


@pytest.mark.parametrize("bad", UNSAFE_IDS)
@pytest.mark.parametrize("which", ["conversation_id", "message_id"])
async def test_unsafe_ids_are_refused(
    proxy: RunningProxy, tmp_path: Path, which: str, bad: str
) -> None:
    before = files_under(tmp_path)
    r = await upload(proxy, image_bytes(), **{which: bad})
    assert which in assert_openai_error(r, 400)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../../../evil.png", "001_evil.png"),
        ("/tmp/evil.png", "001_evil.png"),
        ("..\\..\\evil.png", "001_evil.png"),
        ("..", "001_image.png"),
        ("evil\x00.png", "001_evil.png"),
        ("a" * 3000 + ".png", "001_" + "a" * 100 + ".png"),
    ],
)
async def test_file_names_cannot_leave_the_message_folder(
    proxy: RunningProxy, tmp_path: Path, name: str, stored: str
) -> None:
    before = files_under(tmp_path)
    # Built by hand: httpx would percent-escape a NUL or a quote in the file name.
    boundary = "lai-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + image_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = await proxy.http.post(
        "/v1/images/upload?conversation_id=conv-1&message_id=msg-1",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == stored
    data_rel = proxy.settings.server.data_dir.relative_to(tmp_path)
    assert files_under(tmp_path) - before == {data_rel / "images/conv-1/msg-1" / stored}


async def test_upload_needs_ids_and_a_file_field(proxy: RunningProxy) -> None:
    r = await proxy.http.post(
        "/v1/images/upload?message_id=m", files={"file": ("a.png", image_bytes(), "image/png")}
    )
    assert "conversation_id" in assert_openai_error(r, 400)
    r = await proxy.http.post(
        "/v1/images/upload?conversation_id=c", files={"file": ("a.png", image_bytes(), "image/png")}
    )
    assert "message_id" in assert_openai_error(r, 400)
    r = await proxy.http.post(
        "/v1/images/upload?conversation_id=c&message_id=m",
        files={"picture": ("a.png", image_bytes(), "image/png")},
    )
    assert "'file'" in assert_openai_error(r, 400)
    r = await proxy.http.post(
        "/v1/images/upload?conversation_id=c&message_id=m",
        content=image_bytes(),
        headers={"content-type": "image/png"},
    )
    assert "multipart" in assert_openai_error(r, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images/conv-1/msg-1/001_missing.png",
        "/v1/images/conv-1/msg-1/shot.png",
        "/v1/images/conv-1/msg-1/001_shot.txt",
        "/v1/images/../msg-1/001_shot.png",
        "/v1/images/conv-1/../001_shot.png",
        "/v1/images/%2e%2e/%2e%2e/lai.db",
        "/v1/images/conv-1/msg-1/..%2f..%2f001_shot.png",
        "/v1/images/conv-1/msg-1",
    ],
)
async def test_get_answers_404_for_anything_but_a_stored_image(
    proxy: RunningProxy, path: str
) -> None:
    assert (await upload(proxy, image_bytes())).status_code == 200
    r = await proxy.http.get(path)
    assert_openai_error(r, 404)


# --- chat requests with image_refs ------------------------------------------------------


def decoded_image_parts(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    out = []
    for msg in body["messages"]:
        assert "image_refs" not in msg  # lai's own field never goes upstream
        if isinstance(msg.get("content"), list):
            for part in msg["content"]:
                if part["type"] == "image_url":
                    head, b64 = part["image_url"]["url"].split(",", 1)
                    out.append((head, base64.b64decode(b64)))
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_image_refs_reach_a_vision_model_as_base64_parts(
    proxy: RunningProxy,
    upstream,
    stream: bool,  # type: ignore[no-untyped-def]
) -> None:
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG", (20, 10))
    ref1 = (await upload(proxy, png)).json()
    ref2 = (await upload(proxy, jpeg, filename="b.jpg")).json()
    finished: list[RequestFinished] = []
    proxy.engine.events.subscribe(
        lambda e: finished.append(e) if isinstance(e, RequestFinished) else None
    )
    messages = [{"role": "user", "content": "What is in these?", "image_refs": [ref1, ref2]}]
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": "eyes", "stream": stream, "messages": messages},
        headers={"X-Conversation-ID": "conv-1"},
    )
    assert r.status_code == 200, r.text
    sent = upstream.requests[-1].body
    assert sent["messages"][0]["content"][0] == {"type": "text", "text": "What is in these?"}
    assert decoded_image_parts(sent) == [
        ("data:image/png;base64", png),
        ("data:image/jpeg;base64", jpeg),
    ]
    # What the store records is the client's message, image_refs included.
    for _ in range(100):
        if finished:
            break
        await asyncio.sleep(0.01)
    assert list(finished[-1].request_messages) == messages


async def test_a_non_vision_model_refuses_images_by_name(proxy_factory, upstream) -> None:  # type: ignore[no-untyped-def]
    proxy = await proxy_factory(
        [provider("box", upstream.url)],
        [model("text-only", "box"), model("eyes", "box", capabilities={"vision": True})],
    )
    ref = (await upload(proxy, image_bytes())).json()
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={
            "model": "text-only",
            "messages": [{"role": "user", "content": "see?", "image_refs": [ref]}],
        },
    )
    assert "'text-only'" in assert_openai_error(r, 400)
    assert upstream.chat_count == 0


async def test_auto_picks_the_vision_model_over_a_preferred_text_model(  # type: ignore[no-untyped-def]
    proxy_factory, upstream_factory
) -> None:
    fast, seeing = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("fast", fast.url, priority=1), provider("seeing", seeing.url, priority=5)],
        [model("text-only", "fast"), model("eyes", "seeing", capabilities={"vision": True})],
    )
    png = image_bytes()
    ref = (await upload(proxy, png)).json()
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [
                {"role": "user", "content": "see?", "image_refs": [{"path": ref["path"]}]}
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Model"] == "eyes" and r.headers["X-Provider"] == "seeing"
    assert fast.chat_count == 0
    assert decoded_image_parts(seeing.requests[-1].body) == [("data:image/png;base64", png)]
    # Without images, auto keeps preferring the higher-priority text model.
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.headers["X-Model"] == "text-only"


@pytest.mark.parametrize(
    "ref",
    [
        {"path": "conv-1/msg-1/001_nothing-here.png"},
        {"path": "../../lai.db"},
        {"conversation_id": "..", "message_id": "msg-1", "filename": "001_shot.png"},
        "conv-1/msg-1/001_shot.png",
        {"size": 5},
    ],
)
async def test_bad_image_refs_are_a_400_before_anything_goes_upstream(  # type: ignore[no-untyped-def]
    proxy: RunningProxy, upstream, ref
) -> None:
    assert (await upload(proxy, image_bytes())).status_code == 200
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": "eyes", "messages": [{"role": "user", "content": "x", "image_refs": [ref]}]},
    )
    assert "image_refs[0]" in assert_openai_error(r, 400)
    assert upstream.chat_count == 0


async def test_the_runtime_runs_the_retention_sweep(  # type: ignore[no-untyped-def]
    proxy_factory, upstream, tmp_path
) -> None:
    old = tmp_path / "data" / "images" / "conv-old" / "msg-1"
    old.mkdir(parents=True)
    (old / "001_a.png").write_bytes(image_bytes())
    past = time.time() - 3 * 86400
    for p in (old, old.parent):
        os.utime(p, (past, past))
    proxy = await proxy_factory(
        [provider("box", upstream.url)], [model("m", "box")], images_retention_days=2
    )
    for _ in range(300):
        if not old.parent.exists():
            break
        await asyncio.sleep(0.01)
    assert not old.parent.exists()
    assert proxy.runtime.images is not None and proxy.runtime.images._sweeper is not None


async def test_deleting_a_conversation_deletes_its_images(proxy: RunningProxy) -> None:
    for cid in ("keep-me", "drop-me"):
        ref = (await upload(proxy, image_bytes(), conversation_id=cid)).json()
        r = await proxy.http.post(
            "/v1/chat/completions",
            json={
                "model": "eyes",
                "messages": [{"role": "user", "content": "look", "image_refs": [ref]}],
            },
            headers={"X-Conversation-ID": cid},
        )
        assert r.status_code == 200, r.text
    assert proxy.runtime.recorder is not None
    await proxy.runtime.recorder.flush()
    stored = (await proxy.http.get("/v1/conversations/drop-me")).json()
    assert stored["messages"][0]["image_refs"] == [ref]  # the store kept the references

    r = await proxy.http.delete("/v1/conversations/drop-me")
    assert r.status_code == 200, r.text
    assert not (images_root(proxy) / "drop-me").exists()
    assert (images_root(proxy) / "keep-me" / "msg-1").is_dir()
    got = await proxy.http.get(f"/v1/images/{ref['path']}")
    assert_openai_error(got, 404)
