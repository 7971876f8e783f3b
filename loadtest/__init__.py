"""Load tests (locust users) and the benchmark against the in-repo baseline server."""
