"""CloudWatch metrics the rotation jobs publish and the infra alarms watch.

These names are a contract between ``rotation/`` (publisher) and ``infra/components/monitoring.py``
(alarms). Both import them from here, so they cannot drift apart.

Namespace ``SecureMailApi/Rotation``; every metric is published with the single dimension
``Stack`` (the settings' ``stack`` name, default ``dev``).

- ``RotationSucceeded`` (Count): one per consumer rotation promoted.
- ``RotationFailed`` (Count): one per consumer rotation that failed or was rolled back.
- ``OldestKeyAgeSeconds`` (Seconds): age of the oldest *current* key across consumers.
- ``KeysOverMaxAge`` (Count): consumers whose current key is older than their ``max_age``.
"""

NAMESPACE = "SecureMailApi/Rotation"
DIMENSION_STACK = "Stack"
ROTATION_SUCCEEDED = "RotationSucceeded"
ROTATION_FAILED = "RotationFailed"
OLDEST_KEY_AGE_SECONDS = "OldestKeyAgeSeconds"
KEYS_OVER_MAX_AGE = "KeysOverMaxAge"
