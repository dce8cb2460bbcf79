"""audienceflow.models"""

import audienceflow.operators  # noqa: F401  (installs the compiled-build guard first)
