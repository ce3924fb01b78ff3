"""The catalogue file goes through the API's Structs (catalog/shapes.py): what it may leave
out, and each refusal naming the file and the key, before anything of the model is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventhub import errors
from eventhub.catalog.service import Catalog
from eventhub.log.sqlite import SqliteStore
from eventhub.vault import Vault
from tests.conftest import ManualClock


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    store = SqliteStore(tmp_path / "log.db", ManualClock(), vault=Vault(b"k" * 32))
    await store.open()
    loaded = Catalog(store, ManualClock())
    await loaded.load()
    yield loaded
    await store.close()


async def test_names_default_to_ids_and_unknown_keys_are_ignored(
    catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        "[models.orders]\nowner = 'shop'\n"
        "[[models.orders.triggers]]\nid = 'created'\nfilters = [{ exact = { type = 'c' } }]\n"
        "[[models.orders.triggers]]\nid = 'any'\nname = ''\ndescription = 'all'\nnote = 1\n"
    )
    await catalog.load_file(path)
    model = catalog.model("orders")
    assert (model.name, model.description, model.version) == ("orders", "", 1)
    created, every = model.triggers["created"], model.triggers["any"]
    assert (created.name, created.filters) == ("created", ({"exact": {"type": "c"}},))
    assert (every.name, every.description, every.filters) == ("any", "all", ())
    await catalog.load_file(path)
    assert catalog.model("orders").version == 1, "an unchanged file publishes nothing"


REFUSED: dict[str, tuple[str, str]] = {
    "models not a table": ("models = 5\n", "[models] must be a table"),
    "model not a table": ("[models]\nm = 5\n", "models.m: expected `object`, got `int`"),
    "name not a string": ("[models.m]\nname = 5\n", "models.m: name: expected `str`"),
    "blank name": (
        "[models.m]\nname = ' '\n",
        "models.m: name: expected `str` that is empty or not blank",
    ),
    "triggers not tables": ("[models.m]\ntriggers = 5\n", "models.m: triggers: expected `array`"),
    "trigger without id": (
        "[[models.m.triggers]]\nname = 'T'\n",
        "models.m: triggers[0]: object missing required field `id`",
    ),
    "trigger id with a slash": (
        "[[models.m.triggers]]\nid = 'a/b'\n",
        "models.m: triggers[0].id: expected `str` without '/'",
    ),
    "filters not a list": (
        "[[models.m.triggers]]\nid = 't'\nfilters = 'type = 1'\n",
        "models.m: triggers[0].filters: expected `array`",
    ),
    "filter with two dialects": (
        "[[models.m.triggers]]\nid = 't'\nfilters = [{ exact = { a = 'b' }, not = {} }]\n",
        "models.m: triggers[0].filters[0]: expected `object` of length <= 1",
    ),
    "unknown dialect": (
        "[[models.m.triggers]]\nid = 'ok'\n[[models.m.triggers]]\nid = 't'\n"
        "filters = [{ bogus = {} }]\n",
        "models.m: triggers[1].filters: unknown filter dialect 'bogus'",
    ),
}


@pytest.mark.parametrize(("text", "says"), REFUSED.values(), ids=REFUSED.keys())
async def test_a_refusal_names_the_file_and_the_key(
    catalog: Catalog, tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(errors.InvalidRequest) as caught:
        await catalog.load_file(path)
    assert caught.value.message.startswith(f"{path}: ")
    assert says in caught.value.message, caught.value.message
    assert "m" not in catalog.drafts, "refused before the model's draft was stored"
