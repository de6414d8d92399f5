"""Nightshift's orchestration: the nightly survey flow, the training flow, their deployments, the demo night.

Modules: ``nightly`` (the nightly flow), ``training`` (train, evaluate, promote), ``deployments``
(Prefect deployments, Kubernetes GPU work-pool template), ``config`` (flow parameters), ``layout``
(object keys), ``discovery``, ``ingest``, ``fanout``, ``catalogues``, ``report`` (the stages),
``retries``, ``progress``, ``launcher`` (local S3 + services as processes), ``simulate`` and ``demo``
(the demo night), ``cli`` (the ``nightshift`` command). Nothing is imported here, so the light
commands (``nightshift serve-tilestats``) do not pay for Prefect's import.
"""

__all__: list[str] = []
