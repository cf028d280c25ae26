"""Key administration through pane 3 changes the real store."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Input

from lai.errors import AuthenticationFailed
from lai.store import keys as keyrepo
from lai.store.keylookup import verify_key
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.key_created import KeyCreatedScreen
from lai.tui.screens.key_form import KeyFormScreen
from lai.tui.screens.prompt import PromptScreen
from tests.harness import model, provider
from tests.tui.conftest import SIZE, wait_for


async def test_create_rotate_and_revoke_a_key(embedded_app: Any, upstream: Any) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    store = runtime.store
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        pane = app.screen
        table = pane.query_one("#keys", DataTable)

        # n: the form, then the key, shown once
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyFormScreen), what="form")
        app.screen.query_one("#key-name", Input).value = "laptop"
        app.screen.query_one("#key-expires", Input).value = "30d"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="dialog")
        first_secret = app.screen.secret  # type: ignore[attr-defined]
        (record,) = keyrepo.list_keys(store)
        assert record.name == "laptop" and record.expires_at is not None
        assert verify_key(store, first_secret).name == "laptop"
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == 1, what="the new row")
        assert first_secret not in str(table.get_row_at(0))  # only the prefix is listed

        # r: grace period, confirmation, the successor shown once
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="grace prompt")
        app.screen.query_one(Input).value = "1h"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="new key")
        second_secret = app.screen.secret  # type: ignore[attr-defined]
        assert second_secret != first_secret
        old, new = keyrepo.list_keys(store)
        assert old.grace_until is not None and new.rotated_from == old.id
        assert verify_key(store, first_secret).id == old.id  # still in its grace
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == 2, what="two rows")

        # x on the new key: revoke after confirmation
        table.move_cursor(row=1)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: not keyrepo.list_keys(store)[1].enabled, what="revoked")
        with pytest.raises(AuthenticationFailed):
            verify_key(store, second_secret)
        await wait_for(pilot, lambda: "revoked" in str(table.get_row_at(1)), what="shown")


async def test_a_refused_key_name_is_a_notification(embedded_app: Any, upstream: Any) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyFormScreen), what="form")
        app.screen.query_one("#key-name", Input).value = "lai_nope"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        (note,) = list(app._notifications)
        assert note.severity == "error" and "invalid key name" in note.message
        assert keyrepo.list_keys(runtime.store) == []


async def test_an_agent_key_made_in_the_form_jumps_the_queue(
    embedded_app: Any, upstream: Any
) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        for name in ("agent-ci", "laptop"):
            await pilot.press("3", "n")
            await wait_for(pilot, lambda: isinstance(app.screen, KeyFormScreen), what="form")
            app.screen.query_one("#key-name", Input).value = name
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, KeyCreatedScreen),
                           what="dialog")
            await pilot.press("enter")
    priorities = {k.name: k.priority for k in keyrepo.list_keys(runtime.store)}
    assert priorities == {"agent-ci": 0, "laptop": 1}  # the form leaves the default alone


async def test_copy_a_new_key_and_filter_the_table(embedded_app: Any, upstream: Any) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    store = runtime.store
    store.upgrade()
    for name in ("agent-ci", "agent-batch", "laptop"):
        keyrepo.create_key(store, name)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        pane = app.screen
        table = pane.query_one("#keys", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="three keys")

        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyFormScreen), what="form")
        app.screen.query_one("#key-name", Input).value = "phone"
        app.screen.query_one("#key-expires", Input).value = "3h"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="dialog")
        secret = app.screen.secret  # type: ignore[attr-defined]
        await pilot.press("c")
        # What Textual sent to the terminal as OSC 52 (the headless driver keeps it too).
        assert app.clipboard == secret
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == 4, what="the new key")
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(4)}
        assert str(rows["phone"][7]).startswith(("in 3 h", "in 2 h"))  # expires
        assert rows["laptop"][6] == "never" and rows["laptop"][7] == "never"

        await pilot.press("slash")
        box = pane.query_one("#keys-filter", Input)
        assert box.display and box.has_focus
        box.value = "agent"
        await wait_for(pilot, lambda: table.row_count == 2, what="the agent keys")
        assert {str(table.get_row_at(i)[0]) for i in range(2)} == {"agent-ci", "agent-batch"}
        await pilot.press("escape")
        assert table.has_focus and table.row_count == 2  # the filter stays until cleared
        box.value = ""
        await wait_for(pilot, lambda: table.row_count == 4, what="every key again")


async def test_the_keys_pane_shows_each_limit_with_its_use(embedded_app: Any, upstream: Any
                                                           ) -> None:
    from datetime import UTC, datetime

    from lai.engine.quota import KeyQuota
    from lai.store.models import RequestRecord

    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    store = runtime.store
    store.upgrade()  # the app would migrate it on start; the key is made before
    keyrepo.create_key(store, "batch", quota=KeyQuota(max_concurrent=2, rpm=60,
                                                      budgets=(("day", 5.0),)))
    with store.write_session() as session:
        session.add(RequestRecord(request_id="req_spent", key_name="batch",
                                  model_requested="m1", status="success", cost_usd=1.25,
                                  started_at=datetime.now(UTC)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        table = app.screen.query_one("#keys", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the key's row")
        detail = app.screen.query_one("#keys-detail")
        await wait_for(pilot, lambda: "limits" in str(detail.render()), what="the detail")
        assert str(detail.render()).endswith("limits: ≤2 in flight · 1/60 rpm · $1.25/$5.00 day")
