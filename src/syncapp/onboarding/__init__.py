"""Onboarding: the automatic sign-up after install — the shop's eManageCRM account (a
shared-instance tenant, or the merchant's dedicated subscription linked), its owner user, and
its CTRwow account — as a durable, resumable job of recorded steps.

    plan.py     the pure core: step order, next action, failure → outcome, backoff, keys
    runner.py   advance_signup(): advances one shop's job step by step (lease, I/O)
    topics.py   the bus's topic table (signup.requested) and consume_signups()
    events.py   the signup.requested event, published in the transaction that made a job due
    tokens.py   get_ctrwow_token(): a valid CTRwow token, one refresh in flight per shop
    service.py  ensure_signup_job, request_dedicated_link, restart_signup, signup_status
    runtime.py  OnboardingRuntime and open_onboarding(settings, engine)
    models.py   onboarding_jobs, onboarding_steps, emanage_accounts, ctrwow_accounts
"""

from syncapp.bus.retry import RetryPolicy
from syncapp.onboarding.plan import JobStatus, Step, StepStatus
from syncapp.onboarding.runtime import OnboardingRuntime, open_onboarding
from syncapp.onboarding.service import (
    OnboardingError,
    SignupView,
    StepView,
    ensure_signup_job,
    request_dedicated_link,
    restart_signup,
    signup_status,
)
from syncapp.onboarding.tokens import (
    CtrwowNotConnected,
    CtrwowReconnectRequired,
    CtrwowTokenError,
    CtrwowTokenUnavailable,
    get_ctrwow_token,
)

__all__ = [
    "CtrwowNotConnected",
    "CtrwowReconnectRequired",
    "CtrwowTokenError",
    "CtrwowTokenUnavailable",
    "JobStatus",
    "OnboardingError",
    "OnboardingRuntime",
    "RetryPolicy",
    "SignupView",
    "Step",
    "StepStatus",
    "StepView",
    "ensure_signup_job",
    "get_ctrwow_token",
    "open_onboarding",
    "request_dedicated_link",
    "restart_signup",
    "signup_status",
]
