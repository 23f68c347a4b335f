"""Child-process entry point of ``bench --gpus N``: ``python -m modelprof.timing.rank REQUEST.json`` runs one rank
(its place in the job from ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) and prints one JSON answer
line (see :func:`modelprof.timing.ranks.rank_in_child`)."""

import json
import os
import sys


def main() -> None:
    request = json.loads(open(sys.argv[1]).read())
    sys.path[:] = request.pop("path", sys.path)  # the parent's path, so the same TARGET imports here

    from modelprof.timing.ranks import rank_in_child

    try:
        answer = rank_in_child(request)
    except MemoryError:
        answer = {"oom": True}
    except Exception as exc:  # report, never traceback: the parent turns this into one line naming the rank
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # NB: leave without running destructors: freeing a gloo process group (and DDP's reducer) at exit can deadlock
    # on the GIL (see tests/test_parallel.py); the answer is written, and the exit code says whether it is one
    os._exit(0 if "result" in answer else 1)


if __name__ == "__main__":
    main()
