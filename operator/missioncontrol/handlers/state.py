"""What Prometheus sees of Incidents and IncidentPolicies: two kopf indexes (fed by the watches
the operator keeps anyway) and, at startup, the metrics collector attached to them
(observed.py computes the gauges at each scrape).

The incident index keeps only open incidents and those still holding a freeze: an incident that
resolves or closes drops out of it (kopf purges an object that stops matching `when`), so its
series go with it."""

from __future__ import annotations

import asyncio

import kopf

from .. import GROUP, VERSION, observed


def _tracked(status: kopf.Status, **_: object) -> bool:
    return observed.tracked(status)


@kopf.index(GROUP, VERSION, "incidents", when=_tracked)
def incident_state(body: kopf.Body, **_: object) -> observed.IncidentFacts:
    # A body it cannot read raises: kopf logs it and keeps the object out of the index.
    return observed.incident_facts(body)


@kopf.index(GROUP, VERSION, "incidentpolicies")
def policy_state(body: kopf.Body, **_: object) -> observed.PolicyFacts:
    return observed.policy_facts(body)


@kopf.on.startup()
async def export_state(memo: kopf.Memo, incident_state: kopf.Index,
                       policy_state: kopf.Index, **_: object) -> None:
    def read() -> observed.Snapshot:
        # A single value per object is indexed under the key None.
        return list(incident_state.get(None, ())), list(policy_state.get(None, ()))

    observed.STATE.attach(observed.Source(loop=asyncio.get_running_loop(), read=read,
                                          leading=lambda: memo.leadership.leading))


@kopf.on.cleanup()
async def stop_exporting(**_: object) -> None:
    observed.STATE.attach(None)
