"""What goes wrong with a session: the API's errors, and the failure names the runner's state machine sees when a
dispatched attempt ends without success."""

from __future__ import annotations

from opscore.core.errors import Conflict


class SessionEnded(Conflict):
    code = "session_ended"


AGENT_FAILED_ERROR = "OpsCore.TaskFailed"  # the agent reported a failed result
# The agent reported a failed result that says `"retryable": false`: a name the retriers do not list, so Step Functions
# skips the task's remaining retries and its Catch takes the failure to the fallback (or Record Failure) at once.
AGENT_FAILED_FINAL_ERROR = "OpsCore.TaskFailedNotRetryable"
SESSION_CANCELLED_ERROR = "OpsCore.SessionCancelled"
LEASE_EXPIRED_ERROR = "OpsCore.LeaseExpired"  # no heartbeat or result before the lease ran out
AGENT_OFFLINE_ERROR = "OpsCore.AgentOffline"  # the agent went silent holding the lease
DELIVERY_FAILED_ERROR = "OpsCore.DeliveryFailed"  # a push channel could not hand the task over
TIMEOUT_ERROR = "States.Timeout"  # the runner's own: no result within the task's timeout_seconds of being queued
AGENT_QUARANTINED_ERROR = "OpsCore.AgentQuarantined"  # queued for an agent put in error: straight to the fallback
INPUT_MISSING_ERROR = "OpsCore.InputMissing"  # a reference in the task's input found no value when it was queued
INPUT_TOO_LARGE_ERROR = "OpsCore.InputTooLarge"  # the input, its references resolved, is over the limit

# What a template's retry policy retries: a failed result, a timeout, an expired lease, an agent gone offline holding
# the lease, a failed delivery, an input reference that found nothing. A quarantine, a cancel, an input too large
# (resolving it again gives the same) and a failed result the agent says is not worth retrying are never retried.
RETRIED_ERRORS = (
    AGENT_FAILED_ERROR,
    "States.Timeout",
    LEASE_EXPIRED_ERROR,
    AGENT_OFFLINE_ERROR,
    DELIVERY_FAILED_ERROR,
    INPUT_MISSING_ERROR,
)
