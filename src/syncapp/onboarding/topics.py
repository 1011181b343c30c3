"""The onboarding domain's topic table for the bus: ``signup.requested`` runs the sign-up.

The job's own steps make the three moves (record the attempt, send the request with nothing
held, record the result fenced by the job's lease; :mod:`syncapp.onboarding.runner`). While the
job waits (a step's backoff), its event waits too — outside the retry budget, since waiting is
not failing — and comes back when the job is due.
"""

from __future__ import annotations

from syncapp.bus.interface import APP, Ack, Delivery, Outcome, Retry, TopicTable
from syncapp.onboarding.events import SIGNUP_REQUESTED
from syncapp.onboarding.runner import advance_signup
from syncapp.onboarding.runtime import OnboardingRuntime


def topics(rt: OnboardingRuntime) -> TopicTable:
    async def signup_requested(delivery: Delivery) -> Outcome:
        data = delivery.data()
        wait = await advance_signup(rt, int(data["shop_id"]))
        if wait is None:
            return Ack(note="sign-up over")
        return Retry("the sign-up waits for its next step", after=wait, counts=False)

    return {(APP, SIGNUP_REQUESTED.name): signup_requested}
