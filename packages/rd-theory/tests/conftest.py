import os

from hypothesis import HealthCheck, settings

# CI runs the same examples every time (no flaky reds); locally, HYPOTHESIS_PROFILE=dev explores.
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
