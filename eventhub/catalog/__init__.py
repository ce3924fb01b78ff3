"""The catalogue: knowledge models, triggers, and the filters that decide what fires them."""
