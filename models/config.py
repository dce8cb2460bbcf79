"""The ``models:`` section's typed settings, as the models read them.

``ModelSettings`` is built and checked by ``Settings.load`` with every other
section (``operators/sections.py``), so a bad ``models:`` value is rejected by
``check-config``, not at the first event of a shard; ``settings.models`` is one.

>>> from audienceflow.operators.settings import Settings
>>> Settings.load(environ={"AUDIENCEFLOW_MODELS__CLUSTERING__K": "3"}).models.k
3
"""

from __future__ import annotations

from audienceflow.operators.sections import DBSTREAM_DEFAULTS, ModelSettings

__all__ = ["DBSTREAM_DEFAULTS", "ModelSettings"]
