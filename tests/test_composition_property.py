"""Property test: random mount/unmount/yield/activate/delete/create sequences against the real space.

Hypothesis draws sequences of CLI verbs over four `Node` digis. An oracle,
written here independently of `controllers.graph` (plain networkx over the
stored objects), predicts each verb's outcome: refused (loop or diamond, or a
missing digi), or the mount table afterwards, including the automatic yield of
a second active parent and the removal of a deleted child's replicas. After
every step the test waits until

- the stored mounts equal the oracle's table,
- the manager's graph (`GET /api/v1/graph`) equals the graph of the stored objects,
- and the stored graph is a multitree (acyclic, at most one path between two
  digis) with at most one active parent per digi.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digi.errors import NotFound
from digi.space import Space
from manager.types import GVR
from tests.composition_fixtures import NODES, CompositionSpace, composition_space, node, node_crd
from tests.manager_fixtures import wait_for

pytestmark = pytest.mark.slow

NAMES = ("n0", "n1", "n2", "n3")
Edges = dict[tuple[str, str], str]


@pytest.fixture(scope="module")
def cs(space: Space, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompositionSpace]:
    yield from composition_space(space, tmp_path_factory.mktemp("property-manager"))


def stored(cs: CompositionSpace, ns: str) -> tuple[set[str], Edges]:
    """(existing names, {(parent, child): status}) read from the API server."""
    items, _ = cs.client.list_all(NODES, ns)
    names, edges = set(), {}
    for obj in items:
        parent = obj["metadata"]["name"]
        names.add(parent)
        for key, entry in (
            ((obj.get("spec") or {}).get("mount") or {}).get(str(NODES)) or {}
        ).items():
            edges[(parent, key.rpartition("/")[2])] = (entry or {}).get("status", "active")
    return names, edges


def manager_view(cs: CompositionSpace, ns: str) -> tuple[set[str], Edges]:
    graph = cs.graph()
    names = {n["name"] for n in graph["nodes"] if n["namespace"] == ns and n["exists"]}
    edges = {
        (e["parent"]["name"], e["child"]["name"]): e["status"]
        for e in graph["edges"]
        if e["parent"]["namespace"] == ns
    }
    return names, edges


def refusal(edges: Edges, parent: str, child: str) -> str | None:
    """What the oracle expects a mount to be refused for: 'loop', 'diamond' or None."""
    g = nx.DiGraph(list(edges))
    if parent == child or (child in g and parent in g and nx.has_path(g, child, parent)):
        return "loop"
    if (parent, child) in edges:
        return None
    g.add_edge(parent, child)
    for a in g.nodes:
        for b in g.nodes:
            if a != b and len(list(nx.all_simple_paths(g, a, b))) > 1:
                return "diamond"
    return None


def check_invariants(edges: Edges) -> None:
    g = nx.DiGraph(list(edges))
    assert nx.is_directed_acyclic_graph(g), edges
    for a in g.nodes:
        for b in g.nodes:
            assert a == b or len(list(nx.all_simple_paths(g, a, b))) <= 1, (a, b, edges)
    for child in g.nodes:
        active = [p for (p, c), s in edges.items() if c == child and s == "active"]
        assert len(active) <= 1, (child, active)


class Oracle:
    def __init__(self) -> None:
        self.alive = set(NAMES)
        self.edges: Edges = {}

    def mount(self, child: str, parent: str) -> str | None:
        """None if it succeeds, else the word the refusal must contain."""
        if child not in self.alive or parent not in self.alive:
            return "no digi"
        why = refusal(self.edges, parent, child)
        if why is not None:
            return why
        others = [
            p for (p, c), s in self.edges.items() if c == child and p != parent and s == "active"
        ]
        self.edges[(parent, child)] = "inactive" if others else "active"
        return None

    def unmount(self, child: str, parent: str) -> str | None:
        if child not in self.alive or parent not in self.alive:
            return "no digi"
        if (parent, child) not in self.edges:
            return "not mounted"
        del self.edges[(parent, child)]
        return None

    def set_status(self, child: str, parent: str, status: str) -> str | None:
        if child not in self.alive or parent not in self.alive:
            return "no digi"
        if (parent, child) not in self.edges:
            return "not mounted"
        if status == "active":
            for p, c in self.edges:
                if c == child:
                    self.edges[(p, c)] = "inactive"
        self.edges[(parent, child)] = status
        return None

    def delete(self, name: str) -> None:
        self.alive.discard(name)
        self.edges = {e: s for e, s in self.edges.items() if name not in e}


name = st.sampled_from(NAMES)
step = st.one_of(
    st.tuples(st.just("mount"), name, name),
    st.tuples(st.just("mount"), name, name),
    st.tuples(st.just("unmount"), name, name),
    st.tuples(st.just("yield"), name, name),
    st.tuples(st.just("activate"), name, name),
    st.tuples(st.just("delete"), name),
    st.tuples(st.just("create"), name),
)


def reset(cs: CompositionSpace, ns: str) -> None:
    for n in NAMES:
        with contextlib.suppress(NotFound):
            cs.client.delete(NODES, ns, n)
    wait_for(
        lambda: manager_view(cs, ns) == (set(), {}), 30, "an empty namespace in the manager's graph"
    )
    for n in NAMES:
        cs.client.create(NODES, ns, node(n, ns))


def converge(cs: CompositionSpace, ns: str, oracle: Oracle, history: list[Any]) -> None:
    expected = (oracle.alive, oracle.edges)

    def settled() -> bool:
        return stored(cs, ns) == expected and manager_view(cs, ns) == expected

    try:
        wait_for(settled, 30, "the stored mounts and the manager's graph to match the oracle")
    except AssertionError:
        raise AssertionError(
            f"after {history}: oracle {expected}, stored {stored(cs, ns)}, manager {manager_view(cs, ns)}"
        ) from None
    check_invariants(stored(cs, ns)[1])


@pytest.fixture
def nodes_ns(cs: CompositionSpace, namespace: str) -> str:
    gvr: GVR = cs.ensure_kind(node_crd())
    cs.wait_webhook_covers(gvr)
    return namespace


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=3, max_size=9))
def test_random_composition_matches_an_independent_oracle(
    cs: CompositionSpace, nodes_ns: str, steps: list[tuple[str, ...]]
) -> None:
    ns = nodes_ns
    reset(cs, ns)
    oracle = Oracle()
    history: list[Any] = []
    for op, *args in steps:
        history.append((op, *args))
        if op in ("delete", "create"):
            (target,) = args
            if op == "delete" and target in oracle.alive:
                cs.client.delete(NODES, ns, target)
                oracle.delete(target)
            elif op == "create" and target not in oracle.alive:
                cs.client.create(NODES, ns, node(target, ns))
                oracle.alive.add(target)
        else:
            child, parent = args
            if op == "mount":
                why = oracle.mount(child, parent)
            elif op == "unmount":
                why = oracle.unmount(child, parent)
            else:
                why = oracle.set_status(child, parent, "inactive" if op == "yield" else "active")
            code, out = cs.digi(op, child, parent, "-n", ns)
            if why is None:
                assert code == 0, (history, out)
            else:
                assert code != 0 and why in out, (history, why, out)
        converge(cs, ns, oracle, history)
