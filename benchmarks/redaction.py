"""What `mtmcs.keys.redact` costs per reply (it runs on every reply, trace and cause).

    python benchmarks/redaction.py [--size 2048] [--number 5000]

Two keys known (an OpenAI-style key of 164 characters in OPENAI_API_KEY and a shorter one
given to a provider); replies of `--size` characters: plain prose (the usual case, cleared by
the byte-level prefilter), prose beyond ASCII, prose with an escape (`\\n` written out, which
sends the text to the full search) and prose holding a key. Prints microseconds per call
(best of 5 repeats) and the one-off cost of building the full search for the two keys.
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time
import timeit

from mtmcs.keys import redact, remember_secret

PROSE = (
    "the model replied that it cannot help with this request because it may cause harm; "
    'however here is some safe information about { "json": 3 } and 50% of cases.'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args()
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + "_-"
    env_key = "sk-proj-" + "".join(rng.choice(alphabet) for _ in range(156))
    given = "sk-given-" + "".join(rng.choice(alphabet) for _ in range(32))
    os.environ["OPENAI_API_KEY"] = env_key
    remember_secret(given)

    words = PROSE.split(" ")
    prose = " ".join(rng.choice(words) for _ in range(args.size))[: args.size]
    half = args.size // 2
    texts = {
        "plain prose": prose,
        "prose beyond ASCII": prose.replace("e", "é"),
        "prose with an escape": prose[:half] + "\\n" + prose[half : args.size - 2],
        "prose holding a key": prose[:half] + given + prose[half : args.size - len(given)],
    }
    start = time.perf_counter()
    redact("\\n")  # builds the full search for both keys
    built = time.perf_counter() - start
    print(f"{len(texts['plain prose'])}-character replies, 2 keys known")
    for name, text in texts.items():
        best = min(timeit.repeat(lambda t=text: redact(t), number=args.number, repeat=5))
        print(f"  {name:24} {best / args.number * 1e6:8.1f} µs per call")
    print(f"  full search built once in {built:.2f} s")


if __name__ == "__main__":
    main()
