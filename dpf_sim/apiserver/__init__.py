"""The twin speaks Kubernetes: an aiohttp API server over the twin's MemoryStores (see app.py for the layout)."""

from .app import HOST, ApiServer, ServerThread, cluster_path
from .auth import ServingCert, TokenAuthority, self_signed
from .handlers import ServerConfig
from .podexec import ExecResult, PodExec

__all__ = ["HOST", "ApiServer", "ExecResult", "PodExec", "ServerConfig", "ServerThread", "ServingCert", "TokenAuthority", "cluster_path", "self_signed"]
