"""The cursor consumer: read a trigger's events after a cursor, hand them to a handler, move
the cursor on success; wake-up, paging, cursor commit and crash semantics written once
(``consumer``), on pages shared by every consumer of a trigger (``pages``) and a bounded
number of pages in memory at once (``permit``)."""
