"""The board over the real engine: live rows, and disabling a provider stops routing."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from lai.engine.types import RequestContext
from lai.tui.screens.provider_form import ToggleScreen
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider
from tests.tui.conftest import SIZE, wait_for


async def test_disabling_a_provider_on_the_board_stops_routing_to_it(
    embedded_app: Any, upstream_factory: Any
) -> None:
    first, second = upstream_factory(), upstream_factory()
    app, runtime = embedded_app(
        [provider("first", first.url, priority=1), provider("second", second.url, priority=2)],
        [model("m1", "first"), model("m2", "second")],
    )
    engine = runtime.engine
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#providers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two providers")
        assert (await engine.complete(body, RequestContext())).provider_id == "first"

        await pilot.press("e")  # the cursor starts on the first row
        await wait_for(pilot, lambda: isinstance(app.screen, ToggleScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: not engine.provider("first").enabled, what="disabled")
        await wait_for(pilot, lambda: "disabled" in str(table.get_cell("first", "status")),
                       what="the row to say so")

        served = [(await engine.complete(body, RequestContext())).provider_id for _ in range(3)]
        assert served == ["second"] * 3
        assert first.chat_count == 1 and second.chat_count == 3


async def test_requests_in_flight_are_listed_live(
    embedded_app: Any, upstream: Any
) -> None:
    upstream.default = Behaviour(chunks=40, delay=0.05)
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen
        flights = board.query_one("#flights", DataTable)
        stream = await runtime.engine.stream(
            {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "go"}]},
            RequestContext(key_name="agent-ci"))
        await wait_for(pilot, lambda: flights.row_count == 1, what="the request row")
        assert str(flights.get_row_at(0)[:3]) == str(["agent-ci", "m1", "box"])
        assert "1/4" in str(board.query_one("#providers", DataTable).get_row_at(0))
        async for _chunk in stream:
            pass
        await stream.aclose()
        await wait_for(pilot, lambda: flights.row_count == 0, what="the row to go")
        await wait_for(pilot, lambda: board.state.rate_series(app.clock())[-1] > 0,
                       what="the rate sparkline to count it")


COMMENTED = """# The lab's router.  Comments and spacing here must survive the TUI's edits.
[server]
database_url = "sqlite:///lai.db"   # next to this file
data_dir = "data"
auth = false

# The gaming PC: disabled while someone plays.
[[providers]]
id = "gpu"
name = "Gaming PC"
type = "local"
endpoint = "{url}"
enabled = true        # gaming mode turns this off
priority = 1          # preferred
max_concurrent = 2    # VRAM allows two
health_check_interval = 3600

[[models]]
id = "m1"
provider_id = "gpu"   # served here
context_window = 32768
"""


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), "lines were added or removed"
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


async def test_a_persistent_toggle_and_the_edit_form_change_only_their_lines(
    tmp_path: Any, upstream: Any
) -> None:
    from textual.widgets import Input

    from lai.config.loader import load_settings
    from lai.runtime import build_runtime
    from lai.tui.app import LaiApp
    from lai.tui.embedded import EmbeddedClient
    from lai.tui.screens.provider_form import ProviderFormScreen

    config = tmp_path / "config.toml"
    original = COMMENTED.format(url=upstream.url)
    config.write_text(original)
    settings, _ = load_settings(config)
    runtime = build_runtime(settings)
    app = LaiApp(EmbeddedClient(runtime, config_path=config))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#providers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the provider")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ToggleScreen), what="the choice")
        await pilot.press("s")  # disable and save
        await wait_for(pilot, lambda: not runtime.engine.provider("gpu").enabled,
                       what="disabled live")
        await wait_for(pilot, lambda: config.read_text() != original, what="the file")
        after_toggle = config.read_text()
        assert changed_lines(original, after_toggle) == [
            ("enabled = true        # gaming mode turns this off",
             "enabled = false        # gaming mode turns this off")]

        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProviderFormScreen), what="form")
        app.screen.query_one("#provider-max", Input).value = "3"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "max_concurrent = 3" in config.read_text(),
                       what="the saved value")
    assert changed_lines(after_toggle, config.read_text()) == [
        ("max_concurrent = 2    # VRAM allows two", "max_concurrent = 3    # VRAM allows two")]
    assert load_settings(config)[0].providers[0].enabled is False


def test_the_detail_line_says_what_the_server_reports() -> None:
    from lai.engine.types import ServerLoad
    from lai.tui.board_cells import server_summary
    from lai.tui.client import provider_from_dict

    base = {"id": "nuc", "models": ["coder"], "warm_models": ["coder"]}
    assert server_summary(provider_from_dict(base)) == ""
    nuc = provider_from_dict({**base, "server": "llama.cpp", "loaded_models": ["coder.gguf"],
                              "load": ServerLoad(running=1, slots_total=4,
                                                 slots_idle=3).to_dict()})
    assert server_summary(nuc) == "llama.cpp: 1 loaded · slots 3/4 idle"
    # A garbled answer from an older or foreign proxy is shown as unknown, not an error.
    odd = provider_from_dict({**base, "server": "ollama", "loaded_models": "x",
                              "load": {"running": "many", "kv_cache_usage": True}})
    assert server_summary(odd) == "ollama: loaded unknown"
