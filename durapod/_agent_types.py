"""The agent's types at the facade's edge: a job's result typed on the way out, a resume answer checked on
the way in. The store holds the JSON forms of both."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, JsonValue

from durapod._typed import AgentTypes, answer_codec, resolve_type_key
from durapod.models import Job, JobStatus, check_json

__all__ = ["resume_answer", "typed_result"]


def typed_result(job: Job, types: AgentTypes, agent: str) -> Job:
    """The job with its result as the return type of ``agent`` (its own jobs only, once completed)."""
    if types.result is None or job.status is not JobStatus.COMPLETED or job.agent != agent:
        return job
    return job.model_copy(update={"result": types.load_result(job.result, job.id)})


def resume_answer(job: Job | None, value: Any, job_id: str) -> JsonValue:
    """The JSON form of a resume value, checked against the answer type the job's interrupt asked for."""
    codec = None
    if job is not None and job.waiting_for is not None:
        answer_type = resolve_type_key(job.answer_type)
        codec = answer_codec(answer_type) if answer_type is not None else None
    if codec is None and isinstance(value, BaseModel):
        codec = answer_codec(type(value))
    if codec is None:
        checked: JsonValue = check_json(value, "resume input", job_id)
        return checked
    return codec.dump(value, "resume input", job_id)
