"""Images on disk: what is accepted, what is refused, where it lands, and clean-up."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from pathlib import Path

import pytest

from lai.errors import InvalidRequest, NotFound, RequestTooLarge
from lai.store import conversations as repo
from lai.store.db import open_store
from lai.store.images import ImageStore, sanitize_filename
from lai.store.recorder import Recorder
from tests.store.helpers import finished
from tests.store.image_files import (
    EXTENSIONS,
    FORMATS,
    files_under,
    image_bytes,
    png_declaring,
)

DAY = 86400


@pytest.fixture
def images(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data", max_size=64 * 1024, max_per_message=5)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_is_stored_with_its_detected_type(images: ImageStore, fmt: str) -> None:
    data = image_bytes(fmt, (40, 30))
    # The client's name and extension are ignored for the type: the bytes decide.
    answer = images.save_sync("conv-1", "msg-1", "holiday photo.bmp", data)
    ext = EXTENSIONS[fmt]
    assert answer == {
        "filename": f"001_holiday_photo.{ext}",
        "path": f"conv-1/msg-1/001_holiday_photo.{ext}",
        "size": len(data),
        "mimeType": FORMATS[fmt],
        "width": 40,
        "height": 30,
    }
    assert (images.root / answer["path"]).read_bytes() == data
    assert images.read_sync("conv-1", "msg-1", answer["filename"]) == (data, FORMATS[fmt])


def test_numbering_counts_from_001_per_message(images: ImageStore) -> None:
    names = [images.save_sync("c", "m1", "a.png", image_bytes())["filename"] for _ in range(3)]
    assert names == ["001_a.png", "002_a.png", "003_a.png"]
    assert images.save_sync("c", "m2", "a.png", image_bytes())["filename"] == "001_a.png"


def test_concurrent_uploads_to_one_message_never_collide(images: ImageStore) -> None:
    results: list[object] = []
    barrier = threading.Barrier(8)

    def upload(i: int) -> None:
        barrier.wait()
        try:
            results.append(images.save_sync("c", "m", f"shot{i}.png", image_bytes()))
        except InvalidRequest as exc:
            results.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, InvalidRequest)]
    assert len(stored) == 5 and len(refused) == 3
    assert sorted(r["filename"][:3] for r in stored) == ["001", "002", "003", "004", "005"]
    assert all("at most 5" in r.message for r in refused)
    on_disk = sorted(p.name for p in (images.root / "c" / "m").iterdir())
    assert on_disk == sorted(r["filename"] for r in stored)  # no temp file left behind


def test_too_many_images_for_one_message(images: ImageStore) -> None:
    for _ in range(5):
        images.save_sync("c", "m", "a.png", image_bytes())
    with pytest.raises(InvalidRequest, match="at most 5"):
        images.save_sync("c", "m", "a.png", image_bytes())
    assert len(list((images.root / "c" / "m").iterdir())) == 5


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"just some text, certainly not an image\n" * 10, "not a PNG, JPEG, GIF or WebP"),
        (b"%PDF-1.4\n" + b"0" * 200, "not a PNG, JPEG, GIF or WebP"),
        (b"BM" + b"\x00" * 200, "not a PNG, JPEG, GIF or WebP"),
        (image_bytes("PNG", (64, 64), noise=True)[:3000], "damaged or truncated"),
        (image_bytes("JPEG", (64, 64), noise=True)[:2000], "damaged or truncated"),
        (png_declaring(100_000, 100_000), "decompression bomb"),  # Pillow's own error
        (png_declaring(8000, 8000), "decompression bomb"),  # over our pixel limit
        (png_declaring(10_000, 10_000, full=True), "decompression bomb"),  # a real one
        (b"", "empty"),
    ],
    ids=[
        "text",
        "pdf",
        "bmp",
        "truncated-png",
        "truncated-jpeg",
        "bomb-huge",
        "bomb-limit",
        "bomb-real",
        "empty",
    ],
)
def test_refused_files_leave_nothing_on_disk(
    images: ImageStore, tmp_path: Path, data: bytes, why: str
) -> None:
    with pytest.raises(InvalidRequest, match=why) as err:
        images.save_sync("c", "m", "cat.png", data)  # the name claims PNG; it does not matter
    assert err.value.status == 400
    assert files_under(tmp_path) == set()
    assert not images.root.exists()


def test_pillows_decompression_bomb_warning_is_an_error(tmp_path: Path) -> None:
    # Our own pixel limit raised far beyond Pillow's: its warning still refuses the image.
    images = ImageStore(tmp_path / "data", max_pixels=10**12)
    with pytest.raises(InvalidRequest, match="decompression bomb"):
        images.save_sync("c", "m", "x.png", png_declaring(10_000, 10_000, full=True))
    assert files_under(tmp_path) == set()


def test_over_the_size_limit_is_413(images: ImageStore, tmp_path: Path) -> None:
    data = image_bytes("PNG", (200, 200), noise=True)
    assert len(data) > images.max_size
    with pytest.raises(RequestTooLarge, match="server.max_image_size") as err:
        images.save_sync("c", "m", "big.png", data)
    assert err.value.status == 413
    assert files_under(tmp_path) == set()


UNSAFE_IDS = ["..", ".", "", "a/b", "../x", "a\\b", "a\x00b", "/etc", "x" * 65, "a b", "é", "a\n"]


@pytest.mark.parametrize("bad", UNSAFE_IDS)
@pytest.mark.parametrize("which", ["conversation_id", "message_id"])
def test_unsafe_ids_are_refused(images: ImageStore, tmp_path: Path, which: str, bad: str) -> None:
    ids = {"conversation_id": "c", "message_id": "m", which: bad}
    with pytest.raises(InvalidRequest, match=which):
        images.save_sync(ids["conversation_id"], ids["message_id"], "a.png", image_bytes())
    with pytest.raises(InvalidRequest):
        images.read_sync(ids["conversation_id"], ids["message_id"], "001_a.png")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../../etc/passwd", "passwd.png"),
        ("/etc/cron.d/evil.png", "evil.png"),
        ("..\\..\\windows\\evil.png", "evil.png"),
        ("..", "image.png"),
        ("../", "image.png"),
        ("", "image.png"),
        (None, "image.png"),
        (".hidden.png", "hidden.png"),
        ("a\x00b.png", "ab.png"),
        ("we ird;$(rm -rf).png", "we_ird_rm_-rf.png"),
        ("café crème.PNG", "cafe_creme.png"),
        ("截图.png", "image.png"),
        ("x" * 5000 + ".png", "x" * 100 + ".png"),
        ("photo.jpg", "photo.png"),  # the extension follows the bytes (a PNG here)
    ],
)
def test_file_names_are_sanitised(
    images: ImageStore, tmp_path: Path, given: str | None, stored: str
) -> None:
    assert sanitize_filename(given, "png") == stored
    answer = images.save_sync("c", "m", given, image_bytes("PNG"))
    assert answer["filename"] == f"001_{stored}"
    assert files_under(tmp_path) == {Path("data/images/c/m") / answer["filename"]}


def test_a_symlinked_folder_cannot_lead_outside(images: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    images.root.mkdir(parents=True)
    (images.root / "c").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidRequest, match="leaves the images directory"):
        images.save_sync("c", "m", "a.png", image_bytes())
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    [
        "a.png",
        "001_a.txt",
        "001_../a.png",
        "../001_a.png",
        "001_a.png\x00",
        "1_a.png",
        "001_a.png\n",
    ],
)
def test_reading_only_accepts_stored_names(images: ImageStore, name: str) -> None:
    with pytest.raises(InvalidRequest):
        images.read_sync("c", "m", name)


def test_reading_a_missing_image_is_not_found(images: ImageStore) -> None:
    with pytest.raises(NotFound):
        images.read_sync("c", "m", "001_a.png")


# --- image_refs -> image_url parts ------------------------------------------------------


async def test_resolve_turns_refs_into_base64_parts(images: ImageStore) -> None:
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG")
    a = await images.save("c", "m", "a.png", png)
    b = await images.save("c", "m", "b.jpg", jpeg)
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": "What is this?",
            "image_refs": [
                a,
                {"conversation_id": "c", "message_id": "m", "filename": b["filename"]},
            ],
        },
    ]
    out = await images.resolve(messages)
    assert out[0] is messages[0]
    assert messages[1]["content"] == "What is this?"  # the input is not modified
    parts = out[1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    urls = [p["image_url"]["url"] for p in parts[1:]]
    assert urls[0].startswith("data:image/png;base64,")
    assert urls[1].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(urls[0].split(",", 1)[1]) == png
    assert base64.b64decode(urls[1].split(",", 1)[1]) == jpeg


async def test_resolve_appends_to_part_lists_and_fills_empty_content(images: ImageStore) -> None:
    ref = await images.save("c", "m", "a.png", image_bytes())
    out = await images.resolve(
        [
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "image_refs": [ref]},
            {"role": "user", "content": None, "image_refs": [{"path": ref["path"]}]},
        ]
    )
    assert [p["type"] for p in out[0]["content"]] == ["text", "image_url"]
    assert [p["type"] for p in out[1]["content"]] == ["image_url"]


@pytest.mark.parametrize(
    "ref",
    [
        "c/m/001_a.png",
        {"path": "c/m"},
        {"path": "../m/001_a.png"},
        {"path": "c/m/../../001_a.png"},
        {"path": "/etc/passwd"},
        {"path": 5},
        {"conversation_id": "c", "message_id": "m"},
        {"conversation_id": "..", "message_id": "m", "filename": "001_a.png"},
        {"conversation_id": "c", "message_id": "m", "filename": "../001_a.png"},
        {"path": "c/m/001_missing.png"},
    ],
)
async def test_resolve_refuses_bad_references(images: ImageStore, ref: object) -> None:
    await images.save("c", "m", "a.png", image_bytes())
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.image_refs\[0\]") as err:
        await images.resolve([{"role": "user", "content": "x", "image_refs": [ref]}])
    assert err.value.status == 400


async def test_resolve_refuses_more_refs_than_a_message_may_carry(images: ImageStore) -> None:
    ref = await images.save("c", "m", "a.png", image_bytes())
    with pytest.raises(InvalidRequest, match="at most 5"):
        await images.resolve([{"role": "user", "content": "x", "image_refs": [ref] * 6}])
    with pytest.raises(InvalidRequest, match="must be an array"):
        await images.resolve([{"role": "user", "content": "x", "image_refs": {"path": "x"}}])


# --- deletion and retention -------------------------------------------------------------


async def test_deleting_a_conversation_removes_its_images(tmp_path: Path) -> None:
    images = ImageStore(tmp_path / "data")
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    store.on_conversation_deleted.append(images.delete_conversation)
    try:
        ref = await images.save("chat-1", "m1", "cat.png", image_bytes())
        await images.save("chat-2", "m1", "dog.png", image_bytes())
        rec = Recorder(store)
        await rec.start()
        messages = [{"role": "user", "content": "look", "image_refs": [ref]}]
        rec.observe(finished(conversation_id="chat-1", messages=messages))
        await rec.close()
        # The stored message keeps its image_refs.
        stored = repo.get_conversation(store, "chat-1")["messages"][0]
        assert stored["image_refs"] == [ref]

        repo.delete_conversation(store, "chat-1")
        assert not (images.root / "chat-1").exists()
        assert (images.root / "chat-2" / "m1").is_dir()  # other conversations stay
    finally:
        store.dispose()


def test_delete_hook_never_removes_anything_for_unsafe_ids(images: ImageStore) -> None:
    images.save_sync("c", "m", "a.png", image_bytes())
    for bad in ("..", ".", "", "c/m", "../images"):
        assert images.delete_conversation(bad) is False
    assert images.delete_conversation("never-had-images") is False
    assert (images.root / "c" / "m").is_dir()
    assert images.delete_conversation("c") is True
    assert not (images.root / "c").exists() and images.root.is_dir()


def _age(path: Path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def test_retention_sweep_removes_old_folders_only(tmp_path: Path) -> None:
    images = ImageStore(tmp_path / "data", retention_days=30)
    for conv, msg in [
        ("old", "m1"),
        ("old", "m2"),
        ("mixed", "old"),
        ("mixed", "new"),
        ("fresh", "m1"),
    ]:
        images.save_sync(conv, msg, "a.png", image_bytes())
    for rel in ["old/m1", "old/m2", "mixed/old"]:
        _age(images.root / rel, 31)
    _age(images.root / "old", 31)
    _age(images.root / "mixed", 31)  # old itself, but a message in it is recent
    _age(images.root / "fresh" / "m1", 29)

    removed = images.sweep()
    assert sorted(removed) == ["mixed/old", "old", "old/m1", "old/m2"]
    assert sorted(str(p) for p in files_under(images.root)) == [
        "fresh/m1/001_a.png",
        "mixed/new/001_a.png",
    ]
    assert images.sweep() == []


def test_without_retention_nothing_is_swept(images: ImageStore) -> None:
    images.save_sync("c", "m", "a.png", image_bytes())
    _age(images.root / "c" / "m", 10_000)
    assert images.sweep() == []
    assert (images.root / "c" / "m").is_dir()


async def test_sweeper_task_runs_at_start_and_stops(tmp_path: Path) -> None:
    images = ImageStore(tmp_path / "data", retention_days=1)
    images.save_sync("c", "m", "a.png", image_bytes())
    _age(images.root / "c" / "m", 2)
    images.start()
    try:
        for _ in range(200):
            if not (images.root / "c" / "m").exists():
                break
            await asyncio.sleep(0.01)
        assert not (images.root / "c" / "m").exists()
    finally:
        await images.close()
    assert images._sweeper is None
