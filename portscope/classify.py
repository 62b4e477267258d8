"""Old module path of `portscope.portinfo` (kept so existing imports keep working)."""
from .portinfo import *  # noqa: F401,F403
from .portinfo import (  # noqa: F401
    PortFacts,
    bound_sockets,
    classify,
    classify_name,
    describe_name,
    describe_port,
    has_cap_net_bind_service,
)
