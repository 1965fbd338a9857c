"""The /v1 routes: predict and classify, compare, the model list."""
