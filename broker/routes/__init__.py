"""JSON endpoints by noun: each module declares its routes and turns requests into one domain call."""
