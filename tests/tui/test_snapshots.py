"""Pictures of every pane in its ordinary, empty and error state (fixed data and clock).

Regenerate with ``pytest tests/tui --snapshot-update`` and look at the SVGs before
committing them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from lai.engine.types import Failure, Queued, ServerLoad
from lai.tui.app import LaiApp
from tests.tui.conftest import SIZE
from tests.tui.fakes import (
    NOW,
    FakeClient,
    InFlight,
    conversation,
    history_events,
    key,
    key_limit_rows,
    provider,
    usage_rows,
)


def app_for(client: FakeClient) -> LaiApp:
    return LaiApp(client, clock=lambda: NOW)  # type: ignore[arg-type]


async def settle(pilot: Pilot[Any], *steps: str | list[str]) -> None:
    """Press each step (a key, or a list of keys typed at once), letting workers run
    between steps; then freeze every cursor."""
    await pilot.pause(0.1)
    for step in steps:
        focused = pilot.app.focused
        if isinstance(step, list) and isinstance(focused, Input):
            focused.insert_text_at_cursor("".join(step))  # typing key by key is slow
        else:
            await pilot.press(*([step] if isinstance(step, str) else step))
        await pilot.pause(0.1)
    await pilot.pause(0.1)
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


class TestBoard:
    def test_ordinary(self, snap_compare: Any) -> None:
        flights = [InFlight("req_1", "agent-ci", "qwen2.5-14b", "gaming-pc", NOW - 3.4, True, 57),
                   InFlight("req_2", None, "glm-4.6", "zai", NOW - 0.8, False, 0)]
        client = FakeClient(flights=flights, past=history_events())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=settle)

    def test_empty(self, snap_compare: Any) -> None:
        client = FakeClient(provider_list=[])
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=settle)

    def test_unhealthy_provider_and_lost_events(self, snap_compare: Any) -> None:
        providers = [
            provider("gaming-pc", "Gaming PC (RTX 3090)", "unhealthy", consecutive_failures=3,
                     latency_ms=None, last_error="connection refused (ConnectError)"),
            provider("nuc", "NUC (llama.cpp)", "disabled", priority=2),
        ]
        client = FakeClient(provider_list=providers,
                            events_error="The lai proxy at /srv/lai/data/lai.sock is not "
                                         "reachable (ConnectError: connection refused).")
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=settle)

    def test_queue_and_recent_failures(self, snap_compare: Any) -> None:
        flights = [InFlight("req_1", "agent-ci", "qwen2.5-14b", "gaming-pc", NOW - 3.4, True, 57)]
        queue = [Queued("req_q1", "ana-laptop", "auto", 0, 1, NOW - 2.5, 2500.0, None, 3200.0),
                 Queued("req_q2", "nightly-batch", "qwen2.5-14b", 1, 2, NOW - 9.1, 9100.0, None,
                        11_800.0)]
        failures = [
            Failure(NOW - 40, "req_f1", "nuc", "agent-ci", "auto", "failover", None,
                    "connection refused (ConnectError) (moved to gaming-pc)"),
            Failure(NOW - 300, "req_f2", "zai", "ana-laptop", "glm-4.6", 504,
                    "upstream_timeout", "zai sent nothing for 120 s (read_timeout)."),
        ]
        client = FakeClient(flights=flights, queue=queue, failure_list=failures)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=settle)

    def test_stale_after_the_proxy_stopped(self, snap_compare: Any) -> None:
        flights = [InFlight("req_1", "agent-ci", "qwen2.5-14b", "gaming-pc", NOW - 3.4, True, 57)]

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot)
            await pilot.app.screen.poll().wait()  # the proxy is gone: this poll fails
            while not (pilot.app.screen.stale and pilot.app._notifications):  # type: ignore[attr-defined]
                await pilot.pause(0.05)
            await settle(pilot)

        client = FakeClient(mode="attached", location="/srv/lai/data/lai.sock",
                            flights=flights, unreachable_after=1)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_a_proxy_asks_for_the_engine(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            app = pilot.app
            assert isinstance(app, LaiApp)
            await app.check_handover().wait()
            await settle(pilot)

        client = FakeClient(past=history_events(), handover_pid=4242)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_sorted_and_filtered(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "s", "s", "slash", list("local"), "enter")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)

    def test_what_the_servers_report_loaded(self, snap_compare: Any) -> None:
        """The selected provider's detail line says what its server reports."""
        providers = [
            provider("gaming-pc", "Gaming PC (RTX 3090)", active_requests=2, max_concurrent=4,
                     models=("qwen2.5-14b", "llava-13b"), warm_models=("qwen2.5-14b",),
                     server="vllm", loaded_models=("Qwen/Qwen2.5-14B-Instruct-AWQ",),
                     load=ServerLoad(running=3, waiting=1, kv_cache_usage=0.37)),
            provider("nuc", "NUC (llama.cpp)", priority=2, models=("phi-3-mini",),
                     warm_models=("phi-3-mini",), server="llama.cpp",
                     loaded_models=("phi-3-mini",),
                     load=ServerLoad(running=1, slots_total=2, slots_idle=1)),
        ]
        client = FakeClient(provider_list=providers)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=settle)

    def test_disable_confirmation(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "e")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)


class TestConversations:
    def test_ordinary(self, snap_compare: Any) -> None:
        client = FakeClient(convs=[conversation(i) for i in range(1, 46)])

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2", "n")  # the second page

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_empty(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)

    def test_database_error(self, snap_compare: Any) -> None:
        client = FakeClient(fail={"conversations": "The database failed: database is locked"})

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_open_conversation(self, snap_compare: Any) -> None:
        messages = [
            {"role": "user", "content": "What is in this picture?", "created_at": int(NOW) - 60,
             "image_refs": [{"path": "conv_0001/msg_a1/001_cat.png"}]},
            {"role": "assistant", "content": "A cat sleeping on a keyboard.",
             "provider": "gaming-pc", "model": "llava-13b", "tokens": 9,
             "created_at": int(NOW) - 55},
        ]
        client = FakeClient(convs=[conversation(1, messages=messages)])

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2", "enter")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)


    def test_filtered_by_source(self, snap_compare: Any) -> None:
        client = FakeClient(convs=[conversation(i) for i in range(1, 16)])

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2", "slash", list("source:aider"))
            await pilot.pause(0.5)  # the search waits for typing to pause
            await settle(pilot, "enter")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)


class TestKeys:
    def keys(self) -> list[dict[str, Any]]:
        return [
            key(1, "agent-ci", priority=0, last_used_at="2025-12-31T23:58:00+00:00",
                limits={"max_concurrent": 2, "max_queued": None, "rpm": 60, "tpm": None,
                        "budgets": {"day": 5.0}},
                usage=[{"limit": "rpm", "used": 12}, {"limit": "day", "used": 1.2}]),
            key(2, "laptop", "grace", status_text="grace until 2026-01-01 12:00 UTC",
                grace_until="2026-01-01T12:00:00+00:00", replaced_by="lai_0003"),
            key(3, "laptop", rotated_from="lai_0002", scopes=["admin"],
                expires_at="2026-03-01T00:00:00+00:00"),
            key(4, "old-script", "revoked", revoked_at="2025-12-20T08:00:00+00:00"),
        ]

    def test_ordinary(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3")

        client = FakeClient(key_list=self.keys())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_empty(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)

    def test_key_created_dialog(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3", "n", list("laptop"), "ctrl+s")

        client = FakeClient(key_list=self.keys()[:1])
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_filtered(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3", "slash", list("laptop"))

        client = FakeClient(key_list=self.keys())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_limits_form(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3", "l")

        client = FakeClient(key_list=self.keys())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_database_error(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "3")

        client = FakeClient(fail={"keys": "The database failed: unable to open database file"})
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)


class TestChat:
    def test_answered(self, snap_compare: Any) -> None:
        client = FakeClient(answer=["Here is a list:\n\n", "- one\n", "- **two**\n", "\nDone."])

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "4", list("hello"), "enter")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_empty(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "4")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)

    def test_mid_stream_with_attachment(self, snap_compare: Any) -> None:
        client = FakeClient(hold_after=2)

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "4", list("hi"), "enter",
                         list("/attach /home/ana/cat.png"), "enter")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_model_picker_marks_images_tools_and_warm(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "4", "escape", "down")  # the Gaming PC's models

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)

    def test_continued_conversation(self, snap_compare: Any) -> None:
        messages = [
            {"role": "user", "content": "How do I keep a sourdough starter alive?",
             "created_at": int(NOW) - 600},
            {"role": "assistant", "content": "Feed it **daily** with equal parts flour and "
             "water.", "provider": "gaming-pc", "model": "qwen2.5-14b", "tokens": 14,
             "created_at": int(NOW) - 590},
        ]
        client = FakeClient(convs=[conversation(1, messages=messages)])

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "2", "enter")
            while not pilot.app.screen.conv:  # type: ignore[attr-defined]
                await pilot.pause(0.05)  # the conversation is loaded before c
            await settle(pilot, "c")
            while not pilot.app._notifications:
                await pilot.pause(0.05)
            await settle(pilot)

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_provider_down(self, snap_compare: Any) -> None:
        client = FakeClient(fail={"chat": "No healthy provider can serve model 'auto' "
                                          "(gaming-pc: unhealthy)."})

        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "4", list("hello"), "enter")

        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)


class TestUsage:
    def test_by_day(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "5")

        client = FakeClient(usage_data=usage_rows())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_by_model_over_30_days(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "5", "d", "g")

        client = FakeClient(usage_data=usage_rows())
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_by_key_with_a_long_key_name(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "5", "g", "g", "g")

        long_name = "nightly-batch-summaries-for-the-team-wiki"
        rows = [replace(r, key_name=long_name) if r.key_name == "nightly-batch" else r
                for r in usage_rows()]
        client = FakeClient(usage_data=rows)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_key_limits_and_their_use(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "5")

        flights = [InFlight("req_1", "agent-ci", "qwen2.5-14b", "gaming-pc", NOW - 3.4, True, 57),
                   InFlight("req_2", "ana-laptop", "glm-4.6", "zai", NOW - 0.8, False, 0)]
        queue = [Queued("req_3", "agent-ci", "qwen2.5-14b", 0, 1, NOW - 2.0, 2000.0, None)]
        client = FakeClient(usage_data=usage_rows(), limit_list=key_limit_rows(),
                            flights=flights, queue=queue)
        assert snap_compare(app_for(client), terminal_size=SIZE, run_before=run_before)

    def test_empty(self, snap_compare: Any) -> None:
        async def run_before(pilot: Pilot[Any]) -> None:
            await settle(pilot, "5")

        assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, "question_mark")

    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run_before)
