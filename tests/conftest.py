from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.helpers import in_ci

# CI machines are slow and noisy: no deadline, and a fixed, modest number of examples.
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if in_ci() else "dev")
