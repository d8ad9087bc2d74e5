"""A check schemathesis cannot make on its own: input the API rejects changes nothing.

Before each POST (the only method that can change the store) the hook records the
stock of every toy and every order replica's order count and digest; after the reply
it records them again. A reply in the 4xx range with different figures fails the run.
The fuzzer sends one request at a time, so nothing else changes the store in between.
"""

import json
import os
import urllib.request
from collections import OrderedDict

import schemathesis

FRONTEND = os.environ["FUZZ_FRONTEND"]
REPLICAS = os.environ["FUZZ_REPLICAS"].split(",")

# Figures by request and by reply. Each entry keeps its object alive, so its id()
# cannot be reused by another while the entry exists; the oldest go first.
_KEEP = 256
_before = OrderedDict()
_after = OrderedDict()


def _remember(table, obj, figures):
    table[id(obj)] = (obj, figures)
    while len(table) > _KEEP:
        table.popitem(last=False)


def _recall(table, obj):
    entry = table.get(id(obj))
    return entry[1] if entry is not None and entry[0] is obj else None


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def _figures():
    stock = tuple(
        (toy["name"], toy["quantity"]) for toy in _get(FRONTEND + "/products")["data"]
    )
    orders = tuple(
        (health["orders"], health["digest"])
        for health in (_get(url + "/health") for url in REPLICAS)
    )
    return stock, orders


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() == "POST":
        _remember(_before, case, _figures())


@schemathesis.hook
def after_call(context, case, response):
    if case.method.upper() == "POST":
        _remember(_after, response, _figures())


@schemathesis.check
def rejected_input_changes_nothing(ctx, response, case):
    if case.method.upper() != "POST" or not 400 <= response.status_code < 500:
        return None
    before, after = _recall(_before, case), _recall(_after, response)
    if before is None or after is None:
        return None
    if before != after:
        raise AssertionError(
            f"a {response.status_code} reply changed the store: "
            f"stock and orders were {before}, then {after}"
        )
    return True
