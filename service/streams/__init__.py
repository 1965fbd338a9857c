"""Live streams: the stream table (store.py), how a stream takes its frames (stepping.py), what
the routes share (feeding.py), the V2 sequence extension (sequences.py) and the JSON shapes
(schemas.py)."""
