"""Serving: the design card's model behind Ray Serve, over HTTP.

``mlsd_ray.serve.app:build_app`` is the application builder for ``serve run``/``serve deploy``;
``run_server`` starts it from Python. Importing this package starts nothing.
"""
