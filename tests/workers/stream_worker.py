"""A worker process for the streaming crash test.

    python tests/workers/stream_worker.py STORE_URL WORKER_ID [--watch JOB_ID] [--hold-after TOKENS]

Serves the ``storyteller`` agent: it streams ``WORDS`` tokens, journaling a step every ``CHUNK`` tokens,
with a little work between tokens so that a SIGKILL lands mid-stream. Prints ``ready`` once serving. With
``--watch`` it also follows the job's events as a live subscriber in this process and prints each one as
``event <JSON>``. With ``--hold-after`` the agent stops after streaming that many tokens and waits for
good (its tokens are still flushed to the log): a test that kills it then knows where the stream stands.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from durapod import DurableAgent, JobContext, open_store

WORDS = 60
CHUNK = 10
HOLD_AFTER: int | None = None  # --hold-after


def expected_text() -> str:
    return "".join(f"w{index} " for index in range(WORDS))


async def storyteller(prompt: str, ctx: JobContext) -> str:
    text = ""
    for chunk in range(WORDS // CHUNK):
        words = [f"w{chunk * CHUNK + offset} " for offset in range(CHUNK)]
        for offset, word in enumerate(words):
            await ctx.emit_token(word)
            if HOLD_AFTER is not None and chunk * CHUNK + offset + 1 == HOLD_AFTER:
                await asyncio.Event().wait()  # held until the process is killed
            await asyncio.sleep(0.01)
        # the chunk is checkpointed: a replay after a crash does not stream it again
        text += await ctx.step(f"chunk-{chunk}", "".join, words)
    return text


async def watch(durable: DurableAgent, job_id: str) -> None:
    async for event in durable.stream(job_id):
        print("event", event.model_dump_json(), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("worker_id")
    parser.add_argument("--watch")
    parser.add_argument("--hold-after", type=int)
    args = parser.parse_args()
    global HOLD_AFTER
    HOLD_AFTER = args.hold_after
    durable = DurableAgent(
        storyteller, open_store(args.store), name="storyteller", worker_id=args.worker_id, lease_ttl=1.0
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable:
        tasks = [asyncio.create_task(durable.serve())]
        if args.watch:
            tasks.append(asyncio.create_task(watch(durable, args.watch)))
        print("ready", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await durable.store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
