"""The local dSpace: etcd, kube-apiserver, the Zed lake and the manager on loopback.

`Space(root)` is the whole API (`up`, `down`, `status`, `kubeconfig`, `env()`);
`digi.cli.space_cmd` is its command line and `tests/conftest.py` its test fixture.
"""

from digi.space.space import Space, SpaceError
from digi.space.tools import ToolNotFound, tool_path

__all__ = ["Space", "SpaceError", "ToolNotFound", "tool_path"]
