"""One router per resource: health, models, predict (predict + classify), compare, metrics."""
