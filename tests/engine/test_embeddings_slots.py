"""Embeddings hold slots as chat requests do, and give back every one they took: the
provider's, the model's own (its max_concurrent) and the key's."""

from __future__ import annotations

from typing import Any

import orjson

from lai.engine.quota import KeyQuota
from lai.engine.types import RequestContext
from tests.fakes.upstream import FakeUpstream, embedding
from tests.harness import model, provider


async def test_sequential_embeddings_never_wait_for_a_slot_they_already_gave_back(
    engine_factory: Any, upstream: FakeUpstream
) -> None:
    engine = engine_factory(
        [provider("a", upstream.url, max_concurrent=2)],
        [model("embed", "a", kind="embedding", max_concurrent=1)], queue_timeout=1)
    ctx = RequestContext(key_name="batch", quota=KeyQuota(max_concurrent=1))
    for text in ("one", "two", "three"):
        done = await engine.embed({"model": "embed", "input": text}, ctx)
        assert [d["embedding"] for d in orjson.loads(done.body)["data"]] == [embedding(text)]
    assert engine.slots.in_flight["a"] == 0
    assert engine.slots.model_in_flight == {} and engine.slots.key_in_flight == {}
