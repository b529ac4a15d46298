"""OpenDP as the engine uses it: the members of ``opendp.prelude`` without its optional extras.

``import opendp.prelude`` also imports OpenDP's scikit-learn, NumPy, MBI and Ibis integrations; the
scikit-learn one alone costs seconds of CPU in every process that imports the app. The engine only
needs the core modules and the Polars integration, so this module gathers those under the prelude's
names (``dp.m``, ``dp.c``, ``dp.len``, ``dp.lazyframe_domain``, ...) and turns on the "contrib"
features the Polars measurements need.
"""

from __future__ import annotations

import opendp.combinators as c
import opendp.measurements as m
from opendp.accuracy import *  # noqa: F403
from opendp.domains import *  # noqa: F403
from opendp.extras import polars
from opendp.extras.polars import dp_len as len
from opendp.measures import *  # noqa: F403
from opendp.metrics import *  # noqa: F403
from opendp.mod import *  # noqa: F403
from opendp.mod import enable_features

enable_features("contrib")

__all__ = ["c", "len", "m", "polars"]
