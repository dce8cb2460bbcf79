"""audienceflow.operators"""

from audienceflow.operators import native

# First of all: no stale compiled module may shadow its source (see native.py).
native.install()
