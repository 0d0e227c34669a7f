"""Training: the one loop (``loop.fit``), the Task interface, LR schedules.

``musgen.train(...)`` is also the public training function (see ``musgen.api.train``). Python
binds ``musgen.train`` to this package as soon as any ``musgen.train.*`` module is imported, so the
package itself is made callable and forwards to ``musgen.api.train``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from musgen.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
