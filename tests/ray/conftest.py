"""The opt-in Ray Serve checks: marker ``ray``; run with ``-m ray`` or FRAMECAST_RUN_RAY=1."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "ray: starts a local Ray instance (opt in: -m ray, or "
        "FRAMECAST_RUN_RAY=1 with ray[serve] installed)",
    )
