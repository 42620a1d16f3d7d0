"""What a run does under each fault mode of the fault suite (one row, against the fake server).

    python benchmarks/fault_matrix.py

For each fault (applied to every TF call, --max-retries 1, --timeout 1): requests the server
saw for those calls, calls recorded as failed with their cause, whether the metrics exclude
them, and what a rerun against a healthy server did.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakeserver import FakeServer, RecordedRequest, Reply
from test_faults import FAULTS, run
from test_run_e2e import kind_of, standard_reply


def main() -> None:
    print("fault | TF requests (4 calls) | made | failed | cause | TF n/errors | rerun calls")
    for fault, (reply, _) in FAULTS.items():
        seen: Counter[str] = Counter()

        def responder(
            request: RecordedRequest, reply: Reply = reply, seen: Counter[str] = seen
        ) -> str | Reply:
            if kind_of(request) == "tf":
                seen["tf"] += 1
                return reply
            return standard_reply(request)

        with tempfile.TemporaryDirectory() as scratch, FakeServer(responder) as server:
            out = Path(scratch)
            first = run(server, out, max_retries=1, timeout=1.0)
            calls = first.summary["metadata"]["calls"]["model"]
            tf = first.summary["type_a"]["unimodal"]["tf_accuracy"]
            cause = next(iter(calls["causes"]), "")
            with FakeServer(standard_reply) as healthy:
                second = run(healthy, out)
                rerun = healthy.request_count
            print(
                f"{fault} | {seen['tf']} | {calls['made']} | {calls['failed']} | {cause[:60]} | "
                f"{tf['n']}/{tf['errors']} | {rerun} (complete: {second.complete})"
            )


if __name__ == "__main__":
    main()
