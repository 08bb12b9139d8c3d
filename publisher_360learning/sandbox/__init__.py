"""A 360Learning API v2 stand-in over real HTTP on loopback (see :mod:`.server`)."""
from .server import CLIENT_ID, CLIENT_SECRET, Learning360Sandbox
from .store import AUTHOR_ID, SUB_GROUP, SYNC_GROUP

__all__ = ["AUTHOR_ID", "CLIENT_ID", "CLIENT_SECRET", "Learning360Sandbox", "SUB_GROUP", "SYNC_GROUP"]
