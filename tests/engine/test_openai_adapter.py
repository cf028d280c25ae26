"""The OpenAI adapter's answers as the client gets them: the upstream's bytes, with
``model`` the name the client asked for and ``provider`` added, whether or not the
upstream sent a ``model`` of its own."""

from __future__ import annotations

import orjson

from lai.engine.adapters.openai import OpenAIAdapter, OpenAIStreamParser

ANSWER = {"id": "c1", "object": "chat.completion", "model": "/models/q.gguf",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def test_a_plain_answer_names_the_model_asked_for_and_its_provider() -> None:
    adapter = OpenAIAdapter()
    for doc in (ANSWER, {k: v for k, v in ANSWER.items() if k != "model"}):
        raw = orjson.dumps(doc)
        for provider in ("box", "other-box", "box"):
            parsed = adapter.parse_completion(raw, provider, model="qwen")
            assert orjson.loads(parsed.body) == {**doc, "model": "qwen", "provider": provider}
            assert parsed.body.startswith(raw[:10])  # the upstream's bytes, not re-encoded
        assert orjson.loads(adapter.parse_completion(raw, "box").body) == {
            **doc, "provider": "box"}


def test_stream_chunks_with_and_without_a_model_name_the_one_asked_for() -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    for model in ("qwen", None):
        parser = OpenAIStreamParser("box", False, model=model)
        for doc in ({**chunk, "model": "/m.gguf"}, chunk, chunk, {**chunk, "model": "/m.gguf"}):
            out = parser.feed(None, orjson.dumps(doc))
            assert out is not None and out.startswith(b"data: ") and out.endswith(b"\n\n")
            want = {**doc, "provider": "box"}
            if model is not None:
                want["model"] = model
            assert orjson.loads(out[6:]) == want
