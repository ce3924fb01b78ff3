"""What admins send to the catalogue: a model's draft (``ModelSpec``), a trigger
(``TriggerSpec``), and the catalogue file's ``[models.<id>]`` tables (``FileModel``).

One set of msgspec Structs validates the HTTP bodies (``api.operation.decode``), the catalogue
file (``tomlfile.convert``, whose refusal names the file and key) and gives ``/openapi.json`` its
request schemas. What a schema cannot say (a filter's dialects and CESQL) ``filters.py``
checks: the document lists the dialects, the compiler refuses the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from eventhub.catalog.filters import DIALECTS

T = TypeVar("T")

# A name shown to people: required, and not blank (" " was refused before the schemas too).
Name = Annotated[str, msgspec.Meta(pattern=r"\S", description="Not blank.")]
# In the catalogue file a name may be left out (or ""): the id stands in for it.
FileName = Annotated[
    str, msgspec.Meta(pattern=r"^$|\S", description="Not blank; empty or absent: the id.")
]
# The path segment of a model or trigger: one segment, so no "/" (Catalog._check_id).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/]*$")]

Filter = Annotated[
    dict[str, Any],
    msgspec.Meta(
        min_length=1,
        max_length=1,
        description=(
            "One filter expression: an object with exactly one dialect key. `exact`, `prefix`,"
            " `suffix` take an object of attribute name to non-empty string; `all` and `any` a"
            " non-empty list of filter expressions; `not` one filter expression; `sql` a CESQL"
            " expression string."
        ),
        extra_json_schema={"propertyNames": {"enum": list(DIALECTS)}},
    ),
]


class ModelSpec(msgspec.Struct):
    """A knowledge model's draft: its name and description. Triggers are edited one at a
    time (``PUT …/triggers/{trigger}``) and a model's draft reaches consumers only when it is
    published. Other fields are ignored: clients send back what they read (id, version,
    publishedAt, triggers)."""

    name: Name
    description: str = ""


class TriggerSpec(msgspec.Struct):
    """A trigger in a model's draft: which events it selects.

    ``filters`` is a list of filter expressions in the CloudEvents Subscriptions API dialects,
    ANDed; an empty list selects every event. Each expression is an object with one key:

    - ``{"exact": {"type": "order.created"}}``: the attribute equals the string;
    - ``{"prefix": {"source": "/shop"}}``, ``{"suffix": {"type": ".created"}}``: it starts,
      ends with it (several attributes in one object must all match);
    - ``{"all": [f, ...]}``, ``{"any": [f, ...]}``, ``{"not": f}``: combinations, nesting at
      most 64 levels;
    - ``{"sql": "type = 'order.created' AND id LIKE 'e-1%'"}``: a CESQL expression, true
      only when it evaluates to TRUE without errors.

    Comparisons are case sensitive; an attribute the event lacks never matches. Other fields
    (``id``) are ignored: the trigger's id is the path's."""

    name: Name
    description: str = ""
    filters: list[Filter] = []


class FileTrigger(TriggerSpec, kw_only=True):
    """A ``[[models.<id>.triggers]]`` table of the catalogue file: a trigger and its id; a
    trigger without a name takes its id."""

    id: Id
    name: FileName = ""


class FileModel(msgspec.Struct):
    """A ``[models.<id>]`` table of the catalogue file (or the built-in model's draft): the
    model's name (absent: its id), description and triggers. Loading it makes it the
    published version of the model."""

    name: FileName = ""
    description: str = ""
    triggers: list[FileTrigger] = []
